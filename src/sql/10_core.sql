-- ================================================================
-- Core: password primitives, statistics
-- ================================================================

-- Internal: an argon2id PHC string at the configured cost.  enforce_policy
-- checks the minimum length (off when rehashing an accepted password);
-- floor_hash, when given, is the hash being replaced: the new one's memory
-- and time costs are never below its.
CREATE FUNCTION authx._password_hash(password text, enforce_policy boolean DEFAULT true,
                                     floor_hash text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'authx_password_hash'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION authx._password_hash(text, boolean, text) IS
'Internal. Returns an argon2id hash of the password at the configured costs (or floor_hash''s where higher); raises 22023/22021 for a policy violation.';

-- Internal: 0 = mismatch, 1 = match, 2 = match and needs rehash.  A NULL
-- hash is checked against a dummy of equal cost.
CREATE FUNCTION authx._password_check(hash text, password text)
RETURNS integer
AS 'MODULE_PATHNAME', 'authx_password_check'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION authx._password_check(text, text) IS
'Internal. Returns 0 (mismatch), 1 (match) or 2 (match, hash uses old costs); a NULL hash costs the same as a real one.';

CREATE FUNCTION authx._stats()
RETURNS TABLE (name text, value bigint, kind text)
AS 'MODULE_PATHNAME', 'authx_stats'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx._stats() IS
'Internal. Returns the shared-memory counters behind the authx.stats view; raises 55000 without shared_preload_libraries.';

CREATE VIEW authx.stats AS SELECT name, value, kind FROM authx._stats();
COMMENT ON VIEW authx.stats IS
'One row per counter (monotonic since server start) or gauge of the authx shared-memory area.';
