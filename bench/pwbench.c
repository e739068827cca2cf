/*
 * pwbench.c
 *		The raw-libsodium baseline for `make bench`: argon2id verifications
 *		and hashes per second in one thread, at the costs given on the
 *		command line (the same authx uses), with no PostgreSQL involved.
 *
 *		usage: pwbench SECONDS OPSLIMIT MEMLIMIT_KB
 *		prints: verify_per_sec hash_per_sec
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *pw = "correct horse battery staple";
	char		hash[crypto_pwhash_STRBYTES];
	double		secs,
				start,
				verify_rate,
				hash_rate;
	unsigned long long ops;
	size_t		mem;
	long		n;

	if (argc != 4 || sodium_init() < 0)
	{
		fprintf(stderr, "usage: pwbench SECONDS OPSLIMIT MEMLIMIT_KB\n");
		return 2;
	}
	secs = atof(argv[1]);
	ops = strtoull(argv[2], NULL, 10);
	mem = strtoull(argv[3], NULL, 10) * 1024;

	if (crypto_pwhash_str_alg(hash, pw, strlen(pw), ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return 1;

	start = now();
	for (n = 0; now() - start < secs; n++)
		if (crypto_pwhash_str_verify(hash, pw, strlen(pw)) != 0)
			return 1;
	verify_rate = n / (now() - start);

	start = now();
	for (n = 0; now() - start < secs; n++)
		if (crypto_pwhash_str_alg(hash, pw, strlen(pw), ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
			return 1;
	hash_rate = n / (now() - start);

	printf("%.2f %.2f\n", verify_rate, hash_rate);
	return 0;
}
