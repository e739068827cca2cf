-- 03_users.sql — accounts and passwords, behaviour.
--
-- Covers:
--   * user_create: trimming of email and display name, case kept in storage,
--     argon2id PHC hash stored (never the password), validation SQLSTATEs for
--     email (22004 NULL, 22023 empty / malformed / over 254 bytes), password
--     (22004 NULL, 22023 too short in characters / too long in bytes,
--     authx.password_min_length honoured) and display name (22023);
--   * duplicate email in any case / with blanks / non-ASCII case -> 23505;
--   * user_get / user_find: case-insensitive, trimmed, NULL or no row when
--     unknown or deleted;
--   * soft delete: status 'deleted', deleted_at set, hash erased, email free
--     again, the old id stays 'deleted', later changes raise P0002;
--   * disable -> password_verify false, enable -> true; repeated calls
--     return false; NULL / unknown ids;
--   * password_set: new password verifies, old does not, a refused password
--     leaves the old one in place, P0002 / 22004;
--   * password_verify never NULL: NULL user, NULL password, unknown user,
--     empty and oversized passwords -> false;
--   * rehash on a cost change (opslimit, then memlimit): hash replaced only
--     after a successful verify, with the new parameters in the PHC string;
--     a hash stronger than the configuration (higher t, higher m) is kept;
--     a hash higher in one cost and lower in the other keeps the higher
--     cost (m=128,t=1 under m=64,t=2 becomes m=128,t=2); a read-only transaction
--     does not make verify raise and does not rehash;
--   * NFKC: U+FB01 'ﬁ' and fullwidth forms verify as their ASCII spelling;
--   * transactional audit events user.created, user.disabled, user.enabled,
--     password.changed, user.deleted — one per change, none for a no-op or a
--     refused change, gone when the change is rolled back (ROLLBACK TO).
BEGIN;
SELECT plan(125);

-- Cheap hashes: only the rehash section is about cost, and it sets its own.
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;

-- ================================================================ create / get / find
SELECT authx.user_create(E'  PgTap-Users-1@Example.com \t', 'users password 1', '  Ada Lovelace  ') AS u1 \gset

SELECT isnt(:'u1'::uuid, NULL, 'user_create returns an id');
SELECT is((SELECT count(*) FROM authx.user_get(:'u1'))::int, 1, 'user_get returns one row');
SELECT is((SELECT email FROM authx.user_get(:'u1')), 'PgTap-Users-1@Example.com', 'email is trimmed, case kept');
SELECT is((SELECT display_name FROM authx.user_get(:'u1')), 'Ada Lovelace', 'display name is trimmed');
SELECT is((SELECT status FROM authx.user_get(:'u1')), 'active', 'a new user is active');
SELECT is((SELECT ROW(email_verified, mfa_enabled)::text FROM authx.user_get(:'u1')), '(f,f)',
          'a new user is neither email-verified nor MFA-enabled');
SELECT isnt((SELECT password_changed_at FROM authx.user_get(:'u1')), NULL, 'password_changed_at is set');
SELECT is(authx.user_find('pgtap-users-1@example.com'), :'u1'::uuid, 'user_find is case-insensitive');
SELECT is(authx.user_find(E'\n PGTAP-USERS-1@EXAMPLE.COM\t '), :'u1'::uuid, 'user_find trims blanks');
SELECT is(authx.user_find('pgtap-users-nobody@example.com'), NULL, 'user_find: NULL for an unknown email');
SELECT is(authx.user_find(NULL), NULL, 'user_find(NULL) is NULL');
SELECT is((SELECT count(*) FROM authx.user_get(gen_random_uuid()))::int, 0, 'user_get: no row for an unknown id');
SELECT matches((SELECT password_hash FROM authx.users WHERE id = :'u1'),
               '^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$',
               'the stored hash is an argon2id PHC string at the configured costs');
SELECT ok(position('users password 1' IN (SELECT password_hash FROM authx.users WHERE id = :'u1')) = 0,
          'the stored hash does not contain the password');

-- ================================================================ duplicates
SELECT throws_ok($$SELECT authx.user_create('pgtap-users-1@example.com', 'another password')$$,
                 '23505', 'email is already registered', 'duplicate email, lower case');
SELECT throws_ok($$SELECT authx.user_create(' PGTAP-USERS-1@EXAMPLE.COM  ', 'another password')$$,
                 '23505', 'email is already registered', 'duplicate email, upper case with blanks');
SELECT isnt(authx.user_create('PgTap-Üsers-2@example.com', 'users password 2'), NULL, 'non-ASCII email accepted');
SELECT throws_ok($$SELECT authx.user_create('pgtap-üsers-2@EXAMPLE.com', 'another password')$$,
                 '23505', 'email is already registered', 'duplicate email, non-ASCII letter in another case');
SELECT is((SELECT count(*) FROM authx.users WHERE lower(email) = 'pgtap-users-1@example.com')::int, 1,
          'duplicates left no row behind');

-- ================================================================ validation
SELECT throws_ok($$SELECT authx.user_create(NULL, 'users password x')$$, '22004', 'email must not be null', 'NULL email: 22004');
SELECT throws_ok($$SELECT authx.user_create('', 'users password x')$$, '22023', 'email must not be empty', 'empty email: 22023');
SELECT throws_ok($$SELECT authx.user_create(E' \t ', 'users password x')$$, '22023', 'email must not be empty', 'blank email: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap-users-no-at.example.com', 'users password x')$$, '22023', NULL, 'email without @: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap@localhost', 'users password x')$$, '22023', NULL, 'single-label domain: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap..users@example.com', 'users password x')$$, '22023', NULL, 'double dot in local part: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap@users@example.com', 'users password x')$$, '22023', NULL, 'two @: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap users@example.com', 'users password x')$$, '22023', NULL, 'space in local part: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap-users@-example.com', 'users password x')$$, '22023', NULL, 'label starting with a hyphen: 22023');
SELECT throws_ok(format('SELECT authx.user_create(%L, %L)', repeat('a', 65) || '@example.com', 'users password x'),
                 '22023', NULL, 'local part over 64 bytes: 22023');
-- 64 + 1 + 189 = 254 bytes (labels of 62 characters): the longest valid address.
SELECT lives_ok(format('SELECT authx.user_create(%L, %L)',
                       'pgtap-users-254-' || repeat('a', 48) || '@' || repeat('b', 62) || '.' || repeat('c', 62) || '.'
                       || repeat('d', 59) || '.com', 'users password 254'),
                'a 254-byte email is accepted');
SELECT throws_ok(format('SELECT authx.user_create(%L, %L)',
                        'pgtap-users-255-' || repeat('a', 48) || '@' || repeat('b', 62) || '.' || repeat('c', 62) || '.'
                        || repeat('d', 60) || '.com', 'users password 255'),
                 '22023', 'email is too long', 'a 255-byte email is refused: 22023');
SELECT lives_ok(format('SELECT authx.user_create(%L, %L)', 'pgtap-users-63@' || repeat('b', 63) || '.com', 'users password 63'),
                'an email with a 63-character domain label is accepted');
SELECT throws_ok($$SELECT authx.user_create('pgtap-users-x1@example.com', NULL)$$, '22004', 'password must not be null', 'NULL password: 22004');
SELECT throws_ok($$SELECT authx.user_create('pgtap-users-x1@example.com', 'seven77')$$, '22023', 'password is too short', '7-character password: 22023');
SELECT throws_ok($$SELECT authx.user_create('pgtap-users-x1@example.com', 'ééééééé')$$, '22023', 'password is too short',
                 'minimum counts characters: 7 two-byte characters are too short');
SELECT lives_ok($$SELECT authx.user_create('pgtap-users-x2@example.com', 'éééééééé')$$, '8 two-byte characters are enough');
SELECT throws_ok(format('SELECT authx.user_create(%L, %L)', 'pgtap-users-x1@example.com', repeat('x', 1025)),
                 '22023', 'password is too long', '1025-byte password: 22023');
SELECT throws_ok(format('SELECT authx.user_create(%L, %L)', 'pgtap-users-x1@example.com', repeat('é', 513)),
                 '22023', 'password is too long', 'maximum counts bytes: 513 two-byte characters are too long');
SELECT lives_ok(format('SELECT authx.user_create(%L, %L)', 'pgtap-users-x3@example.com', repeat('x', 1024)),
                'a 1024-byte password is accepted');
SET authx.password_min_length = 12;
SELECT throws_ok($$SELECT authx.user_create('pgtap-users-x1@example.com', 'elevenchars')$$, '22023', 'password is too short',
                 'authx.password_min_length = 12 refuses 11 characters');
RESET authx.password_min_length;
SELECT throws_ok(format('SELECT authx.user_create(%L, %L, %L)', 'pgtap-users-x1@example.com', 'users password x', repeat('n', 201)),
                 '22023', 'invalid display name', 'display name over 200 characters: 22023');
SELECT throws_ok(format('SELECT authx.user_create(%L, %L, %L)', 'pgtap-users-x1@example.com', 'users password x', E'Ada\nLovelace'),
                 '22023', 'invalid display name', 'display name with a control character: 22023');
SELECT is((SELECT display_name FROM authx.user_get(authx.user_create('pgtap-users-x4@example.com', 'users password x', '   '))),
          NULL, 'a blank display name is stored as NULL');
SELECT is(authx.user_find('pgtap-users-x1@example.com'), NULL, 'no refused call created pgtap-users-x1');

-- ================================================================ password_verify edge cases
SELECT is(authx.password_verify(:'u1', 'users password 1'), true, 'verify: right password');
SELECT is(authx.password_verify(:'u1', 'users password 2'), false, 'verify: wrong password');
SELECT is(authx.password_verify(:'u1', 'USERS PASSWORD 1'), false, 'verify: passwords are case-sensitive');
SELECT is(authx.password_verify(:'u1', ''), false, 'verify: empty password is false');
SELECT is(authx.password_verify(NULL, 'users password 1'), false, 'verify: NULL user is false, not NULL');
SELECT is(authx.password_verify(:'u1', NULL), false, 'verify: NULL password is false, not NULL');
SELECT is(authx.password_verify(gen_random_uuid(), 'users password 1'), false, 'verify: unknown user is false');
SELECT is(authx.password_verify(:'u1', repeat('x', 5000)), false, 'verify: oversized password is false, no error');

-- ================================================================ disable / enable
SELECT is(authx.user_disable(:'u1'), true, 'user_disable returns true');
SELECT is(authx.user_disable(:'u1'), false, 'user_disable again returns false');
SELECT is((SELECT status FROM authx.user_get(:'u1')), 'disabled', 'status is disabled');
SELECT is(authx.password_verify(:'u1', 'users password 1'), false, 'disabled: right password does not verify');
SELECT is(authx.user_enable(:'u1'), true, 'user_enable returns true');
SELECT is(authx.user_enable(:'u1'), false, 'user_enable again returns false');
SELECT is(authx.password_verify(:'u1', 'users password 1'), true, 'enabled again: password verifies');
UPDATE authx.users SET status = 'locked' WHERE id = :'u1';
SELECT is(authx.password_verify(:'u1', 'users password 1'), true, 'locked (documented): password verifies');
SELECT is(authx.user_enable(:'u1'), true, 'user_enable unlocks a locked user');
SELECT throws_ok(format('SELECT authx.user_disable(%L)', gen_random_uuid()), 'P0002', NULL, 'user_disable: unknown id is P0002');
SELECT throws_ok(format('SELECT authx.user_enable(%L)', gen_random_uuid()), 'P0002', NULL, 'user_enable: unknown id is P0002');
SELECT throws_ok('SELECT authx.user_disable(NULL)', '22004', 'user_id must not be null', 'user_disable(NULL) is 22004');

-- ================================================================ password_set
SELECT password_hash AS h_before_set FROM authx.users WHERE id = :'u1' \gset
SELECT lives_ok(format('SELECT authx.password_set(%L, %L)', :'u1', 'users password 2'), 'password_set works');
SELECT is(authx.password_verify(:'u1', 'users password 2'), true, 'the new password verifies');
SELECT is(authx.password_verify(:'u1', 'users password 1'), false, 'the old password no longer verifies');
SELECT isnt((SELECT password_hash FROM authx.users WHERE id = :'u1'), :'h_before_set', 'the stored hash changed');
SELECT throws_ok(format('SELECT authx.password_set(%L, %L)', :'u1', 'short'), '22023', 'password is too short',
                 'password_set refuses a short password');
SELECT is(authx.password_verify(:'u1', 'users password 2'), true, 'after a refused change the password is unchanged');
SELECT throws_ok(format('SELECT authx.password_set(%L, %L)', gen_random_uuid(), 'users password 9'), 'P0002', NULL,
                 'password_set: unknown id is P0002');
SELECT throws_ok($$SELECT authx.password_set(NULL, 'users password 9')$$, '22004', 'user_id must not be null',
                 'password_set: NULL id is 22004');

-- ================================================================ rehash on a cost change
SELECT password_hash AS h_t1 FROM authx.users WHERE id = :'u1' \gset
SET authx.password_opslimit = 2;
SELECT is(authx.password_verify(:'u1', 'wrong password'), false, 'cost changed: wrong password is false');
SELECT is((SELECT password_hash FROM authx.users WHERE id = :'u1'), :'h_t1', 'a failed verify does not rehash');
SELECT is(authx.password_verify(:'u1', 'users password 2'), true, 'cost changed: right password verifies');
SELECT isnt((SELECT password_hash FROM authx.users WHERE id = :'u1'), :'h_t1', 'a successful verify rehashed');
SELECT matches((SELECT password_hash FROM authx.users WHERE id = :'u1'), '^\$argon2id\$v=19\$m=64,t=2,p=1\$',
               'the new hash has t=2');
SELECT password_hash AS h_t2 FROM authx.users WHERE id = :'u1' \gset
SELECT is(authx.password_verify(:'u1', 'users password 2'), true, 'rehashed password verifies');
SELECT is((SELECT password_hash FROM authx.users WHERE id = :'u1'), :'h_t2', 'a hash at the current costs is kept');
SET authx.password_memlimit = 128;
SELECT is(authx.password_verify(:'u1', 'users password 2'), true, 'memlimit changed: password verifies');
SELECT matches((SELECT password_hash FROM authx.users WHERE id = :'u1'), '^\$argon2id\$v=19\$m=128,t=2,p=1\$',
               'the new hash has m=128');
-- A stronger hash than the configuration is kept (never lower a cost).
-- (A user of its own, so that u1's event list below stays short.)
SELECT authx.user_create('pgtap-users-cost@example.com', 'users password 2') AS uh \gset
SELECT password_hash AS h_m128 FROM authx.users WHERE id = :'uh' \gset
SELECT matches(:'h_m128'::text, '^\$argon2id\$v=19\$m=128,t=2,p=1\$', 'uh is hashed at m=128, t=2');
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
SELECT is(authx.password_verify(:'uh', 'users password 2'), true, 'costs lowered: the m=128,t=2 hash verifies');
SELECT is((SELECT password_hash FROM authx.users WHERE id = :'uh'), :'h_m128',
          'a hash stronger than the configuration (m and t higher) is kept');
SET authx.password_opslimit = 3;
SELECT lives_ok(format('SELECT authx.password_set(%L, %L)', :'uh', 'users password 2'), 'password set at t=3');
SELECT password_hash AS h_t3 FROM authx.users WHERE id = :'uh' \gset
SET authx.password_opslimit = 1;
SELECT is(authx.password_verify(:'uh', 'users password 2'), true, 'opslimit lowered: the t=3 hash verifies');
SELECT is((SELECT password_hash FROM authx.users WHERE id = :'uh'), :'h_t3', 'a hash with a higher t is kept');
-- Higher m, lower t than configured: the rehash should raise t without
-- giving up the memory cost.
SET authx.password_memlimit = 128;
SELECT lives_ok(format('SELECT authx.password_set(%L, %L)', :'uh', 'users password 2'), 'password set at m=128, t=1');
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 2;
SELECT is(authx.password_verify(:'uh', 'users password 2'), true, 'm=128,t=1 hash verifies under m=64,t=2');
SELECT matches((SELECT password_hash FROM authx.users WHERE id = :'uh'), '^\$argon2id\$v=19\$m=128,t=2,p=1\$',
               'the rehash raised t to 2 and kept m=128 (rehashing never lowers a cost)');
SELECT is(authx.password_verify(:'uh', 'users password 2'), true, 'the m=128,t=2 rehash verifies');
-- _password_hash's floor (superuser here): each cost is max(configured, floor's).
SELECT matches(authx._password_hash('users password 2', false, '$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA'),
               '^\$argon2id\$v=19\$m=256,t=2,p=1\$', '_password_hash floor: m from the floor, t from the configuration');
SELECT matches(authx._password_hash('users password 2', false, 'not a PHC string'),
               '^\$argon2id\$v=19\$m=64,t=2,p=1\$', '_password_hash: an unparsable floor is ignored');
SELECT matches(authx._password_hash('users password 2', false, NULL),
               '^\$argon2id\$v=19\$m=64,t=2,p=1\$', '_password_hash: no floor, the configured costs');
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
-- password_verify is documented to never raise; a rehash is an UPDATE.
SET authx.password_opslimit = 2;
SELECT lives_ok(format('SELECT authx.password_set(%L, %L)', :'uh', 'users password 2'), 'password set at t=2');
SET authx.password_opslimit = 3;
SELECT password_hash AS h_ro FROM authx.users WHERE id = :'uh' \gset
SAVEPOINT read_only;
SET LOCAL transaction_read_only = on;
SELECT lives_ok(format('SELECT authx.password_verify(%L, %L)', :'uh', 'users password 2'),
                'verify needing a rehash does not raise in a read-only transaction');
SELECT is(authx.password_verify(:'uh', 'users password 2'), true, 'read-only: the right password verifies');
ROLLBACK TO SAVEPOINT read_only;
SELECT is((SELECT password_hash FROM authx.users WHERE id = :'uh'), :'h_ro', 'read-only: the hash was not replaced');
SELECT is(authx.password_verify(:'uh', 'users password 2'), true, 'read-write again: verify at t=3 works');
SELECT matches((SELECT password_hash FROM authx.users WHERE id = :'uh'), '^\$argon2id\$v=19\$m=64,t=3,p=1\$',
               'read-write again: the rehash happens (t=3)');
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;

-- ================================================================ NFKC
SELECT authx.user_create('pgtap-users-nfkc@example.com', E'\uFB01ne password') AS un \gset
SELECT is(authx.password_verify(:'un', 'fine password'), true, 'password set with U+FB01 verifies as "fi"');
SELECT is(authx.password_verify(:'un', E'\uFB01ne password'), true, 'and as itself');
SELECT is(authx.password_verify(:'un', 'fine passwort'), false, 'but not as another password');
SELECT lives_ok(format('SELECT authx.password_set(%L, %L)', :'un', 'ｐａｓｓｗｏｒｄ１２'), 'password_set with fullwidth forms');
SELECT is(authx.password_verify(:'un', 'password12'), true, 'fullwidth password verifies as ASCII');

-- ================================================================ soft delete
SELECT is(authx.user_delete(:'u1'), true, 'user_delete returns true');
SELECT is((SELECT count(*) FROM authx.user_get(:'u1'))::int, 0, 'user_get: no row for a deleted user');
SELECT is(authx.user_find('pgtap-users-1@example.com'), NULL, 'user_find: NULL for a deleted user');
SELECT is((SELECT ROW(status, deleted_at IS NOT NULL, password_hash IS NULL)::text FROM authx.users WHERE id = :'u1'),
          '(deleted,t,t)', 'the row stays: status deleted, deleted_at set, hash erased');
SELECT is(authx.password_verify(:'u1', 'users password 2'), false, 'a deleted user does not verify');
SELECT throws_ok(format('SELECT authx.user_delete(%L)', :'u1'), 'P0002', NULL, 'user_delete again is P0002');
SELECT throws_ok(format('SELECT authx.user_enable(%L)', :'u1'), 'P0002', NULL, 'user_enable of a deleted user is P0002');
SELECT throws_ok(format('SELECT authx.password_set(%L, %L)', :'u1', 'users password 9'), 'P0002', NULL,
                 'password_set of a deleted user is P0002');
SELECT authx.user_create('PGTAP-USERS-1@example.com', 'users password 3') AS u1b \gset
SELECT isnt(:'u1b'::uuid, :'u1'::uuid, 'the freed email is registered again with a new id');
SELECT is(authx.user_find('pgtap-users-1@example.com'), :'u1b'::uuid, 'user_find returns the new account');
SELECT is((SELECT status FROM authx.users WHERE id = :'u1'), 'deleted', 'the old id stays deleted');

-- ================================================================ transactional audit events
SELECT results_eq(
    format($$SELECT event_type, severity::text, coalesce(details->>'previous_status', '-')
               FROM authx.audit_log WHERE user_id = %L ORDER BY id$$, :'u1'),
    $$VALUES ('user.created', 'info', '-'),
             ('user.disabled', 'medium', 'active'),
             ('user.enabled', 'info', 'disabled'),
             ('user.enabled', 'info', 'locked'),
             ('password.changed', 'medium', '-'),
             ('user.deleted', 'medium', 'active')$$,
    'one event per change of u1, none for no-ops or refused changes, in order');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'un' AND event_type = 'password.changed')::int, 1,
          'password_set emits password.changed');

SAVEPOINT before_create;
SELECT authx.user_create('pgtap-users-rollback@example.com', 'users password r') AS ur \gset
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'ur' AND event_type = 'user.created')::int, 1,
          'user.created is visible inside the transaction');
ROLLBACK TO SAVEPOINT before_create;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'ur')::int, 0,
          'user.created is gone when the creation is rolled back');
SELECT is(authx.user_find('pgtap-users-rollback@example.com'), NULL, 'and so is the user');

SAVEPOINT before_changes;
SELECT authx.user_disable(:'u1b'), authx.user_enable(:'u1b'), authx.password_set(:'u1b', 'users password 4'),
       authx.user_delete(:'u1b') \gset
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'u1b' AND event_type <> 'user.created')::int, 4,
          'disable, enable, password_set, delete: four events inside the transaction');
ROLLBACK TO SAVEPOINT before_changes;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'u1b' AND event_type <> 'user.created')::int, 0,
          'rolled back: the four events are gone');
SELECT is((SELECT status FROM authx.user_get(:'u1b')), 'active', 'rolled back: the user is active again');
SELECT is(authx.password_verify(:'u1b', 'users password 3'), true, 'rolled back: the old password verifies');

SELECT * FROM finish();
ROLLBACK;
