SELECT password_hash = crypt(:pw, password_hash) FROM bench.pgcrypto_users WHERE id = :uid;
