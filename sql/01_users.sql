--
-- Accounts and passwords: the API, then every invalid input.
--
-- Cheap argon2 costs keep the file fast; the default costs are checked in
-- the pgTAP and TAP suites.
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
\set SHOW_CONTEXT never

-- Create: the email is trimmed, kept as typed, unique case-insensitively.
SELECT authx.user_create('  Regress.One@Example.COM ', 'correct horse battery staple', 'Regress One') AS u1 \gset
SELECT email, display_name, status, email_verified, mfa_enabled,
       created_at IS NOT NULL AS created, last_login_at
  FROM authx.user_get(:'u1');
SELECT authx.user_find('regress.one@example.com') = :'u1' AS lower_case,
       authx.user_find(' REGRESS.ONE@EXAMPLE.COM ') = :'u1' AS upper_case,
       authx.user_find('nobody@example.com') IS NULL AS unknown,
       authx.user_find(NULL) IS NULL AS null_email;

-- Only an argon2id PHC string is stored, at the configured costs.
SELECT password_hash LIKE '$argon2id$v=19$m=64,t=1,p=1$%' AS argon2id
  FROM authx.users WHERE id = :'u1';

-- Verify: true only for the right password; never NULL, never an error.
SELECT authx.password_verify(:'u1', 'correct horse battery staple') AS right_pw,
       authx.password_verify(:'u1', 'correct horse battery stapl') AS wrong_pw,
       authx.password_verify(:'u1', NULL) AS null_pw,
       authx.password_verify(NULL, 'correct horse battery staple') AS null_user,
       authx.password_verify('00000000-0000-0000-0000-000000000000', 'x') AS unknown_user,
       authx.password_verify(:'u1', repeat('x', 2000)) AS oversized;

-- A hash made with older costs is replaced on the next successful verify.
SET authx.password_opslimit = 2;
SELECT authx.password_verify(:'u1', 'wrong password') AS wrong_pw_keeps_hash;
SELECT password_hash LIKE '$argon2id$v=19$m=64,t=1,p=1$%' AS still_old FROM authx.users WHERE id = :'u1';
SELECT authx.password_verify(:'u1', 'correct horse battery staple') AS right_pw;
SELECT password_hash LIKE '$argon2id$v=19$m=64,t=2,p=1$%' AS rehashed FROM authx.users WHERE id = :'u1';

-- password_set replaces the password.
SELECT authx.password_set(:'u1', 'a whole new passphrase');
SELECT authx.password_verify(:'u1', 'correct horse battery staple') AS old_pw,
       authx.password_verify(:'u1', 'a whole new passphrase') AS new_pw;

-- Passwords are NFKC-normalised: the ligature "ﬁ" is the same as "fi".
SELECT authx.user_create('nfkc@example.com', 'ﬁve ﬁsh in a dish') AS u2 \gset
SELECT authx.password_verify(:'u2', 'five fish in a dish') AS nfkc;

-- Addresses mail systems accept.
SELECT authx.user_create(e, 'long enough password') IS NOT NULL AS created, e AS email
  FROM (VALUES ('o''brien+tag@sub.example.co.uk'), ('x@y.io'), ('ünïcödé@bücher.example'),
               ('first.last@xn--bcher-kva.example'), ('a-b_c@a-b.example')) v(e);
SELECT email, status FROM authx.users
 WHERE id IN (authx.user_find('O''Brien+tag@sub.example.co.uk'), authx.user_find('X@Y.IO'),
              authx.user_find('ÜNÏCÖDÉ@BÜCHER.EXAMPLE'))
 ORDER BY email;

-- Disable: no password check succeeds; enable restores it.
SELECT authx.user_disable(:'u1') AS disabled, authx.user_disable(:'u1') AS disabled_again;
SELECT status FROM authx.user_get(:'u1');
SELECT authx.password_verify(:'u1', 'a whole new passphrase') AS verify_when_disabled;
SELECT authx.user_enable(:'u1') AS enabled, authx.user_enable(:'u1') AS enabled_again;
SELECT authx.password_verify(:'u1', 'a whole new passphrase') AS verify_when_enabled;

-- Soft delete: the row stays (hash erased), the email becomes free.
SELECT authx.user_delete(:'u2') AS deleted;
SELECT count(*) AS visible FROM authx.user_get(:'u2');
SELECT authx.user_find('nfkc@example.com') IS NULL AS not_found;
SELECT status, password_hash IS NULL AS hash_erased, deleted_at IS NOT NULL AS has_deleted_at
  FROM authx.users WHERE id = :'u2';
SELECT authx.user_create('NFKC@example.com', 'another good password') <> :'u2' AS email_reused;

-- A rolled-back creation leaves neither a user nor an event.
BEGIN;
SELECT authx.user_create('rolled-back@example.com', 'long enough password') AS u3 \gset
ROLLBACK;
SELECT count(*) AS users FROM authx.users WHERE email = 'rolled-back@example.com';
SELECT count(*) AS events FROM authx.audit_log WHERE user_id = :'u3';

-- Every change left a transactional event.
SELECT user_id = :'u1' AS u1, event_type, severity, details
  FROM authx.audit_log WHERE user_id IN (:'u1', :'u2') ORDER BY id;

-- Invalid input: one line each, and no row left behind.
SELECT count(*) AS users_before FROM authx.users \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.user_create(NULL, 'password123')$$),
    ($$authx.user_create('', 'password123')$$),
    ($$authx.user_create('   ', 'password123')$$),
    ($$authx.user_create('no-at-sign.example.com', 'password123')$$),
    ($$authx.user_create('two@@example.com', 'password123')$$),
    ($$authx.user_create('@example.com', 'password123')$$),
    ($$authx.user_create('ada@', 'password123')$$),
    ($$authx.user_create('ada@localhost', 'password123')$$),
    ($$authx.user_create('ada@-example.com', 'password123')$$),
    ($$authx.user_create('ada@example-.com', 'password123')$$),
    ($$authx.user_create('ada@example..com', 'password123')$$),
    ($$authx.user_create('a..b@example.com', 'password123')$$),
    ($$authx.user_create('.ada@example.com', 'password123')$$),
    ($$authx.user_create('ada.@example.com', 'password123')$$),
    ($$authx.user_create('ada smith@example.com', 'password123')$$),
    ($$authx.user_create('"ada"@example.com', 'password123')$$),
    ($$authx.user_create('ada<x>@example.com', 'password123')$$),
    ($$authx.user_create(E'ada\n@example.com', 'password123')$$),
    ($$authx.user_create(repeat('a', 65) || '@example.com', 'password123')$$),
    ($$authx.user_create('a@' || repeat('b', 250) || '.com', 'password123')$$),
    ($$authx.user_create('REGRESS.ONE@example.com', 'password123')$$),
    ($$authx.user_create('new1@example.com', NULL)$$),
    ($$authx.user_create('new2@example.com', '')$$),
    ($$authx.user_create('new3@example.com', 'short')$$),
    ($$authx.user_create('new4@example.com', 'ééééééé')$$),
    ($$authx.user_create('new5@example.com', repeat('x', 1025))$$),
    ($$authx.user_create('new6@example.com', 'password123', repeat('x', 201))$$),
    ($$authx.user_create('new7@example.com', 'password123', E'bad\x01name')$$),
    ($$authx.password_set(NULL, 'password123')$$),
    ($$authx.password_set('00000000-0000-0000-0000-000000000000', 'password123')$$),
    ($$authx.password_set(authx.user_find('regress.one@example.com'), 'short')$$),
    ($$authx.password_set(authx.user_find('regress.one@example.com'), NULL)$$),
    ($$authx.user_disable(NULL)$$),
    ($$authx.user_disable('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.user_enable('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.user_delete('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.user_delete((SELECT id FROM authx.users WHERE email = 'nfkc@example.com'))$$)
) v(call);
SELECT count(*) - :users_before AS rows_left_behind FROM authx.users;
SELECT authx.password_verify(:'u1', 'a whole new passphrase') AS password_unchanged;

-- Boundaries that are accepted: 8 characters, 1024 bytes, 200-char name.
SELECT authx.user_create('min@example.com', '12345678') IS NOT NULL AS min_length,
       authx.user_create('max@example.com', repeat('é', 512)) IS NOT NULL AS max_bytes,
       authx.user_create('name@example.com', 'password123', repeat('n', 200)) IS NOT NULL AS max_name;
