/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		libsodium wrappers: argon2id passwords, random tokens, SHA-256, and
 *		the master key that seals secrets at rest.
 *
 * The only file that includes <sodium.h>.  Runs in backends.  Argon2id takes
 * authx.password_memlimit of memory per computation, so when authx is
 * preloaded a counter in shared memory (password_inflight, an atomic) caps
 * how many run at once; waiters sleep on password_cv.  Between taking and
 * returning a slot nothing may raise an error, so the slot cannot leak.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include <sodium.h>

#include "authx.h"

/*
 * A well-formed argon2id string whose digest no password produces.  An
 * unknown user is verified against it with the configured costs, so a
 * missing account costs the same time as a wrong password.
 */
#define AUTHX_DUMMY_SALT	"YXV0aHgtZHVtbXktc2FsdA"
#define AUTHX_DUMMY_DIGEST	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/* Results of authx._password_check. */
#define AUTHX_PW_MISMATCH	0
#define AUTHX_PW_MATCH		1
#define AUTHX_PW_REHASH		2

/*
 * authx_crypto_init
 *		Initialise libsodium once per process (idempotent in libsodium).
 */
void
authx_crypto_init(void)
{
	if (sodium_init() < 0)
		ereport(FATAL,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libsodium")));
}

/*
 * password_slots
 *		The concurrency cap in force: the GUC, or twice the CPU count.
 */
static uint32
password_slots(void)
{
	/* sysconf reads sysfs: once per process is enough. */
	static long ncpu = 0;

	if (authx_password_max_concurrent > 0)
		return (uint32) authx_password_max_concurrent;
	if (ncpu == 0)
		ncpu = Max(sysconf(_SC_NPROCESSORS_ONLN), 1);
	return (uint32) (2 * ncpu);
}

/*
 * password_slot_acquire
 *		Wait for a free argon2 slot.  Interruptible (statement_timeout and
 *		cancel work while waiting); time spent waiting goes to the stats.
 */
static void
password_slot_acquire(void)
{
	bool		waited = false;
	TimestampTz start = 0;

	if (authx_shared == NULL)
		return;

	for (;;)
	{
		uint32		cur = pg_atomic_read_u32(&authx_shared->password_inflight);

		if (cur < password_slots())
		{
			if (pg_atomic_compare_exchange_u32(&authx_shared->password_inflight,
											   &cur, cur + 1))
				break;
			continue;
		}
		if (!waited)
		{
			waited = true;
			start = GetCurrentTimestamp();
			ConditionVariablePrepareToSleep(&authx_shared->password_cv);
		}
		/* A timeout only re-checks; a lost wakeup costs at most 100 ms. */
		(void) ConditionVariableTimedSleep(&authx_shared->password_cv, 100,
										   PG_WAIT_EXTENSION);
	}

	if (waited)
	{
		long		secs;
		int			usecs;

		ConditionVariableCancelSleep();
		TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
		authx_stat_add(AUTHX_STAT_PASSWORD_WAITS, 1);
		authx_stat_add(AUTHX_STAT_PASSWORD_WAIT_US, (uint64) secs * 1000000 + usecs);
	}
}

static void
password_slot_release(void)
{
	if (authx_shared == NULL)
		return;
	pg_atomic_fetch_sub_u32(&authx_shared->password_inflight, 1);
	ConditionVariableSignal(&authx_shared->password_cv);
}

/*
 * password_prepare
 *		Return the password as the bytes we hash: valid UTF-8, at most
 *		AUTHX_PASSWORD_MAX_BYTES, NFKC-normalised in UTF-8 databases (NIST
 *		SP 800-63B 5.1.1.2) so that the same visible password always matches.
 *		With check_min set, the minimum length is checked as well (not when
 *		rehashing a password that was accepted under an older policy).
 *
 *		Returns NULL instead of raising when raise is false and the input is
 *		unusable (verification then simply fails).
 */
static text *
password_prepare(text *pw, bool raise, bool check_min)
{
	int			len = VARSIZE_ANY_EXHDR(pw);
	text	   *norm;

	if (len > AUTHX_PASSWORD_MAX_BYTES)
	{
		if (!raise)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password is too long"),
				 errdetail("The maximum is %d bytes.", AUTHX_PASSWORD_MAX_BYTES),
				 errhint("Use a passphrase of at most %d bytes.", AUTHX_PASSWORD_MAX_BYTES)));
	}

	if (pg_encoding_verifymbstr(PG_UTF8, VARDATA_ANY(pw), len) != len)
	{
		if (!raise)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("password is not valid UTF-8"),
				 errhint("Send passwords as UTF-8 text.")));
	}

	if (GetDatabaseEncoding() == PG_UTF8)
		norm = DatumGetTextPP(DirectFunctionCall2(unicode_normalize_func,
												  PointerGetDatum(pw),
												  CStringGetTextDatum("NFKC")));
	else
		norm = pw;

	if (check_min &&
		pg_mbstrlen_with_len(VARDATA_ANY(norm), VARSIZE_ANY_EXHDR(norm)) < authx_password_min_length)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password is too short"),
				 errdetail("The minimum is %d characters (authx.password_min_length).",
						   authx_password_min_length),
				 errhint("Choose a longer password; a passphrase of several words is best.")));
	return norm;
}

/*
 * wipe_text
 *		Zero a text we made (never the caller's argument) before freeing it.
 */
static void
wipe_text(text *t, text *orig)
{
	if (t != NULL && t != orig)
	{
		sodium_memzero(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		pfree(t);
	}
}

/*
 * hash_costs
 *		The memory (kB) and time costs of an argon2id PHC string; false when
 *		it is not one.
 */
static bool
hash_costs(const char *hash, unsigned long *m, unsigned long *t)
{
	int			v;
	int			p;

	return sscanf(hash, "$argon2id$v=%d$m=%lu,t=%lu,p=%d$", &v, m, t, &p) == 4;
}

PG_FUNCTION_INFO_V1(authx_password_hash);

/*
 * authx._password_hash(password text, enforce_policy boolean,
 *						 floor_hash text) RETURNS text
 *		An argon2id PHC string for the password at the configured costs, or
 *		at floor_hash's where those are higher (a rehash never lowers a cost).
 *		Internal: the user functions call it; applications cannot.
 */
Datum
authx_password_hash(PG_FUNCTION_ARGS)
{
	text	   *pw;
	text	   *norm;
	bool		enforce = PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1);
	char		out[crypto_pwhash_STRBYTES];
	int			rc;
	unsigned long ops;
	unsigned long mem_kb;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("password must not be null"),
				 errhint("Pass the password as a non-null text value.")));
	pw = PG_GETARG_TEXT_PP(0);
	norm = password_prepare(pw, true, enforce);
	ops = (unsigned long) authx_password_opslimit;
	mem_kb = (unsigned long) authx_password_memlimit;
	if (!PG_ARGISNULL(2))
	{
		unsigned long floor_m;
		unsigned long floor_t;

		if (hash_costs(text_to_cstring(PG_GETARG_TEXT_PP(2)), &floor_m, &floor_t))
		{
			ops = Max(ops, floor_t);
			mem_kb = Max(mem_kb, floor_m);
		}
	}

	password_slot_acquire();
	rc = crypto_pwhash_str_alg(out, VARDATA_ANY(norm), VARSIZE_ANY_EXHDR(norm),
							   (unsigned long long) ops, (size_t) mem_kb * 1024,
							   crypto_pwhash_ALG_ARGON2ID13);
	password_slot_release();
	wipe_text(norm, pw);

	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not compute password hash"),
				 errdetail("argon2id needs %d kB (authx.password_memlimit).", authx_password_memlimit),
				 errhint("Lower authx.password_max_concurrent or authx.password_memlimit.")));
	authx_stat_add(AUTHX_STAT_PASSWORD_HASHES, 1);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/*
 * hash_is_weaker
 *		Should a verified hash be replaced?  Yes when it is not argon2id or
 *		when its memory or time cost is below the configured one.  A hash
 *		stronger than the configuration (say t=3, m=64 MiB from another
 *		system) is kept: rehashing must never lower the cost.
 */
static bool
hash_is_weaker(const char *hash)
{
	unsigned long m;
	unsigned long t;

	if (!hash_costs(hash, &m, &t))
		return true;
	return m < (unsigned long) authx_password_memlimit ||
		t < (unsigned long) authx_password_opslimit;
}

PG_FUNCTION_INFO_V1(authx_password_check);

/*
 * authx._password_check(hash text, password text) RETURNS integer
 *		0 = no match, 1 = match, 2 = match and the hash should be recomputed
 *		at the current costs (it is weaker than them, or not argon2id).  A NULL hash (unknown user) is checked against
 *		a dummy hash of the same cost so the call takes the same time.  Never
 *		raises on bad input: it answers 0.
 */
Datum
authx_password_check(PG_FUNCTION_ARGS)
{
	char	   *hash;
	text	   *pw;
	text	   *norm;
	int			rc;
	int			result = AUTHX_PW_MISMATCH;

	if (PG_ARGISNULL(1))
		PG_RETURN_INT32(AUTHX_PW_MISMATCH);
	pw = PG_GETARG_TEXT_PP(1);
	norm = password_prepare(pw, false, false);
	if (norm == NULL)
		PG_RETURN_INT32(AUTHX_PW_MISMATCH);

	if (PG_ARGISNULL(0))
		hash = psprintf("$argon2id$v=19$m=%d,t=%d,p=1$%s$%s",
						authx_password_memlimit, authx_password_opslimit,
						AUTHX_DUMMY_SALT, AUTHX_DUMMY_DIGEST);
	else
		hash = text_to_cstring(PG_GETARG_TEXT_PP(0));

	password_slot_acquire();
	rc = crypto_pwhash_str_verify(hash, VARDATA_ANY(norm), VARSIZE_ANY_EXHDR(norm));
	password_slot_release();
	wipe_text(norm, pw);
	authx_stat_add(AUTHX_STAT_PASSWORD_VERIFIES, 1);

	if (rc == 0 && !PG_ARGISNULL(0))
		result = hash_is_weaker(hash) ? AUTHX_PW_REHASH : AUTHX_PW_MATCH;
	PG_RETURN_INT32(result);
}

/*
 * authx_token_generate
 *		Write prefix + 43 base64url characters of 32 random bytes and a NUL
 *		into out (AUTHX_TOKEN_LEN + 1 bytes).  The raw bytes are wiped.
 */
void
authx_token_generate(const char *prefix, char *out)
{
	unsigned char raw[32];

	Assert(strlen(prefix) == AUTHX_TOKEN_PREFIX_LEN);
	randombytes_buf(raw, sizeof(raw));
	memcpy(out, prefix, AUTHX_TOKEN_PREFIX_LEN);
	sodium_bin2base64(out + AUTHX_TOKEN_PREFIX_LEN, AUTHX_TOKEN_BODY_LEN + 1,
					  raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
}

/*
 * authx_random_bytes
 *		Fill buf with len bytes from the operating system's CSPRNG.
 */
void
authx_random_bytes(void *buf, Size len)
{
	randombytes_buf(buf, len);
}

/*
 * authx_token_wellformed
 *		Right length, right prefix, base64url body.  Cheap; used to answer
 *		garbage without touching an index.
 */
bool
authx_token_wellformed(const char *prefix, const char *tok, Size len)
{
	Size		i;

	/* A scale-out token ends in its bucket: ".hhhh" (see authx.shard_tokens). */
	if (len == AUTHX_TOKEN_LEN + AUTHX_TOKEN_BUCKET_LEN)
	{
		if (!authx_bucket_suffix_valid(tok + AUTHX_TOKEN_LEN))
			return false;
		len = AUTHX_TOKEN_LEN;
	}
	if (len != AUTHX_TOKEN_LEN || memcmp(tok, prefix, AUTHX_TOKEN_PREFIX_LEN) != 0)
		return false;
	for (i = AUTHX_TOKEN_PREFIX_LEN; i < len; i++)
	{
		char		c = tok[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

void
authx_sha256(const char *data, Size len, uint8 *out)
{
	crypto_hash_sha256(out, (const unsigned char *) data, len);
}

/*
 * authx_equal_ct
 *		Constant-time equality of two secrets (or digests of secrets).
 */
bool
authx_equal_ct(const void *a, const void *b, Size len)
{
	return sodium_memcmp(a, b, len) == 0;
}

/* ----------------------------------------------------------------
 * The master key: secrets kept at rest (TOTP seeds)
 * ----------------------------------------------------------------
 *
 * 32 random bytes, written as 64 hex digits in authx.key_file, or by default
 * in <data directory>/authx.key, which the postmaster creates (mode 0600) at
 * its first start when the library is preloaded and the server is not a
 * standby (a standby must use its primary's key: pg_basebackup copies it).
 * Backends read it once, on first use.  Secrets are sealed with
 * XChaCha20-Poly1305 under it, with the owning row's id as associated data,
 * so a sealed value copied to another row does not open.
 */
#define AUTHX_KEY_HEX		(2 * crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
#define AUTHX_SEAL_VERSION	1

static unsigned char master_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
static bool master_loaded = false;

static char *
key_path(void)
{
	if (authx_key_file == NULL || authx_key_file[0] == '\0')
		return psprintf("%s/authx.key", DataDir);
	if (is_absolute_path(authx_key_file))
		return pstrdup(authx_key_file);
	return psprintf("%s/%s", DataDir, authx_key_file);
}

/*
 * authx_key_create_default
 *		Postmaster, while preloading: create <data directory>/authx.key if
 *		authx.key_file is unset and the file does not exist, unless this
 *		server is to start as a standby.  Written to a temporary file and
 *		linked into place, so a reader never sees half a key.
 */
void
authx_key_create_default(void)
{
	char	   *path;
	char	   *tmp;
	char	   *signal;
	unsigned char raw[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
	char		hexkey[AUTHX_KEY_HEX + 2];
	int			fd;
	bool		ok;

	if (authx_key_file != NULL && authx_key_file[0] != '\0')
		return;
	path = key_path();
	if (access(path, F_OK) == 0)
		return;
	signal = psprintf("%s/standby.signal", DataDir);
	if (access(signal, F_OK) == 0)
		return;
	tmp = psprintf("%s.%d.tmp", path, (int) getpid());
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hexkey, sizeof(hexkey), raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	hexkey[AUTHX_KEY_HEX] = '\n';
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR);
	ok = fd >= 0 && write(fd, hexkey, AUTHX_KEY_HEX + 1) == AUTHX_KEY_HEX + 1 && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	sodium_memzero(hexkey, sizeof(hexkey));
	if (ok && link(tmp, path) != 0 && errno != EEXIST)
		ok = false;
	unlink(tmp);
	/* The new name must survive a power loss too. */
	if (ok && fsync_fname_ext(DataDir, true, false, WARNING) != 0)
		ok = false;
	if (!ok)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("authx could not create its key file \"%s\": %m", path),
				 errhint("Secrets at rest (TOTP) cannot be stored until it exists; set authx.key_file or fix the permissions.")));
	else
		ereport(LOG, (errmsg("authx created its key file \"%s\"", path),
					  errhint("Back it up with the data: without it, TOTP secrets cannot be read.")));
}

static void
load_master_key(void)
{
	char	   *path;
	char		buf[AUTHX_KEY_HEX + 3];
	ssize_t		n;
	size_t		binlen = 0;
	int			fd;

	if (master_loaded)
		return;
	path = key_path();
	fd = open(path, O_RDONLY, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("authx key file \"%s\" cannot be read: %m", path),
				 errhint("The primary creates <data directory>/authx.key at its first start with authx preloaded; a standby needs a copy of its primary's, or set authx.key_file.")));
	/* The whole file: 64 hex digits and at most a line end, nothing else. */
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n == (ssize_t) sizeof(buf))
		n = -1;
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n != AUTHX_KEY_HEX ||
		sodium_hex2bin(master_key, sizeof(master_key), buf, n, NULL, &binlen, NULL) != 0 ||
		binlen != sizeof(master_key))
	{
		sodium_memzero(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("authx key file \"%s\" does not hold a key", path),
				 errhint("It must contain 64 hexadecimal digits (32 random bytes) and at most a line end.")));
	}
	sodium_memzero(buf, sizeof(buf));
	master_loaded = true;
}

/*
 * authx_seal
 *		Encrypt msg[0..len) under the master key with ad as associated data:
 *		a version byte, a random nonce, then the ciphertext and its tag.
 */
bytea *
authx_seal(const uint8 *msg, Size len, const uint8 *ad, Size adlen)
{
	Size		total = 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + len +
		crypto_aead_xchacha20poly1305_ietf_ABYTES;
	bytea	   *out = palloc(VARHDRSZ + total);
	unsigned char *p = (unsigned char *) VARDATA(out);
	unsigned long long clen;

	load_master_key();
	SET_VARSIZE(out, VARHDRSZ + total);
	p[0] = AUTHX_SEAL_VERSION;
	randombytes_buf(p + 1, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(p + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen,
											   msg, len, ad, adlen, NULL, p + 1, master_key);
	return out;
}

/*
 * authx_unseal
 *		Decrypt a value of authx_seal into out (outlen bytes, exactly the
 *		plaintext's length).  False when it does not open: another key,
 *		another row, or tampered with.
 */
bool
authx_unseal(const bytea *sealed, const uint8 *ad, Size adlen, uint8 *out, Size outlen)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(sealed);
	Size		len = VARSIZE_ANY_EXHDR(sealed);
	unsigned long long mlen;

	load_master_key();
	if (len != 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + outlen +
		crypto_aead_xchacha20poly1305_ietf_ABYTES || p[0] != AUTHX_SEAL_VERSION)
		return false;
	return crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL,
													  p + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
													  len - 1 - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
													  ad, adlen, p + 1, master_key) == 0 &&
		mlen == outlen;
}

/*
 * authx_subkey
 *		A key for one purpose, derived from the master key (BLAKE2b KDF):
 *		ctx names the purpose (8 characters), so keys of different uses
 *		never coincide and none reveals the master key.
 */
void
authx_subkey(const char *ctx, uint64 id, uint8 *out, Size len)
{
	load_master_key();
	if (crypto_kdf_derive_from_key(out, len, id, ctx, master_key) != 0)
		elog(ERROR, "authx: key derivation failed");
}
