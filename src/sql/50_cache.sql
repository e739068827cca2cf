-- ================================================================
-- Redis write-through (src/cache.c, src/redis.c, src/worker_redis.c)
-- ================================================================

-- Every change of a session row gets the next version.  Writers of a row
-- serialize on its row lock, so versions follow commit order for the key,
-- which is what the Redis script compares.
CREATE FUNCTION authx._sessions_version()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION authx._sessions_version() IS
'Internal. Trigger: gives every update of a session row the next version.';

CREATE TRIGGER sessions_version
BEFORE UPDATE ON authx.sessions
FOR EACH ROW EXECUTE FUNCTION authx._sessions_version();

CREATE FUNCTION authx._sessions_cache()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_sessions_cache'
LANGUAGE C;
COMMENT ON FUNCTION authx._sessions_cache() IS
'Internal. Trigger: queues the session''s new state (entry or tombstone) for Redis, sent at commit; does nothing while the cache is off.';

CREATE TRIGGER sessions_cache
AFTER INSERT OR UPDATE OR DELETE ON authx.sessions
FOR EACH ROW EXECUTE FUNCTION authx._sessions_cache();

CREATE FUNCTION authx._cache_truncated()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_cache_truncated'
LANGUAGE C;
COMMENT ON FUNCTION authx._cache_truncated() IS
'Internal. Trigger: a TRUNCATE of sessions or API keys fires no row trigger, so the Redis writer resyncs the whole cache once the transaction commits.';

CREATE TRIGGER sessions_truncated
AFTER TRUNCATE ON authx.sessions
FOR EACH STATEMENT EXECUTE FUNCTION authx._cache_truncated();

CREATE FUNCTION authx.cache_sync(timeout interval DEFAULT '30 seconds')
RETURNS void
AS 'MODULE_PATHNAME', 'authx_cache_sync'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.cache_sync(interval) IS
'Waits until every cache operation committed before the call is applied to Redis; returns at once when the cache is off; raises 55000 after the timeout.';

CREATE FUNCTION authx.cache_status()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'authx_cache_status'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.cache_status() IS
'Returns the Redis writer''s state: enabled, connected, writer_pid, queue_depth, queue_capacity, lag_p50_ms, lag_p99_ms, run_id, last_error, last_error_at (never the URL).';
