-- ================================================================
-- API keys (src/apikeys.c, src/ratelimit.c)
-- ================================================================

-- A key reads axk_<prefix>_<secret>: prefix is 12 hex digits, public (shown
-- to humans, written in logs and events); secret is 256 random bits.  Only
-- sha256 of the whole key is stored.  Rotation keeps the id and the prefix
-- and moves the old hash to prev_hash, valid until prev_until.
CREATE TABLE authx.api_keys (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    prefix          text COLLATE "C" NOT NULL CONSTRAINT api_keys_prefix_key UNIQUE
                    CHECK (prefix ~ '^[0-9a-f]{12}$'),
    key_hash        bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    prev_hash       bytea CHECK (octet_length(prev_hash) = 32),
    prev_until      timestamptz,
    user_id         uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    scopes          text[] COLLATE "C" NOT NULL DEFAULT '{}' CHECK (array_position(scopes, NULL) IS NULL),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    rate_limit      integer CHECK (rate_limit > 0),
    rate_window     interval NOT NULL DEFAULT '1 minute'
                    CHECK (rate_window >= interval '1 second' AND rate_window <= interval '366 days'),
    remaining       integer CHECK (remaining >= 0),
    refill_amount   integer CHECK (refill_amount > 0),
    refill_interval interval CHECK (refill_interval >= interval '1 second'),
    refilled_at     timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    revoke_reason   text,
    owner_disabled  boolean NOT NULL DEFAULT false,
    version         bigint NOT NULL DEFAULT 1,
    CHECK ((refill_amount IS NULL) = (refill_interval IS NULL)),
    CHECK (refill_interval IS NULL OR (remaining IS NOT NULL AND refilled_at IS NOT NULL)),
    CHECK ((prev_hash IS NULL) = (prev_until IS NULL))
);
CREATE INDEX api_keys_user_idx ON authx.api_keys (user_id);
COMMENT ON TABLE authx.api_keys IS
'API keys. key_hash is sha256 of the whole key string (the key itself is never stored); prev_hash is the secret before the last rotation, accepted until prev_until. owner_disabled mirrors the owner''s status (disabled or deleted). version orders the row''s changes in the Redis cache.';
SELECT pg_catalog.pg_extension_config_dump('authx.api_keys', '');

-- Verifications per key, hour and answer, written by the maintenance worker
-- from shared-memory counters.
CREATE TABLE authx.api_key_usage (
    key_id uuid NOT NULL REFERENCES authx.api_keys (id) ON DELETE CASCADE,
    hour   timestamptz NOT NULL,
    code   text COLLATE "C" NOT NULL,
    count  bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (key_id, hour, code)
);
COMMENT ON TABLE authx.api_key_usage IS
'Verification counts per key, hour and answer code, persisted from shared memory by the maintenance worker.';
SELECT pg_catalog.pg_extension_config_dump('authx.api_key_usage', '');

-- Every change of a key row gets the next version (see _sessions_version).
CREATE TRIGGER api_keys_version
BEFORE UPDATE ON authx.api_keys
FOR EACH ROW EXECUTE FUNCTION authx._sessions_version();

CREATE FUNCTION authx._api_keys_cache()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_api_keys_cache'
LANGUAGE C;
COMMENT ON FUNCTION authx._api_keys_cache() IS
'Internal. Trigger: queues the key''s new state for Redis (entry, tombstone, or a marker that sends gateways to Postgres), sent at commit; does nothing while the cache is off.';

CREATE TRIGGER api_keys_cache
AFTER INSERT OR UPDATE OR DELETE ON authx.api_keys
FOR EACH ROW EXECUTE FUNCTION authx._api_keys_cache();

CREATE TRIGGER api_keys_truncated
AFTER TRUNCATE ON authx.api_keys
FOR EACH STATEMENT EXECUTE FUNCTION authx._cache_truncated();

-- A disabled or deleted owner's keys answer "disabled"; re-enabling the
-- owner brings them back (a lockout after failed logins does not touch them:
-- an attacker must not be able to switch off someone's keys).
CREATE FUNCTION authx._user_status_apikeys()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE authx.api_keys k SET owner_disabled = (NEW.status IN ('disabled', 'deleted'))
     WHERE k.user_id = NEW.id AND k.owner_disabled IS DISTINCT FROM (NEW.status IN ('disabled', 'deleted'));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION authx._user_status_apikeys() IS
'Internal. Trigger: marks a user''s API keys as disabled while the user is disabled or deleted.';

CREATE TRIGGER users_status_apikeys
AFTER UPDATE OF status ON authx.users
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION authx._user_status_apikeys();

CREATE FUNCTION authx._apikey_new(prefix text DEFAULT NULL, user_id uuid DEFAULT NULL,
                                  OUT api_key text, OUT key_prefix text, OUT key_hash bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'authx_apikey_new'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION authx._apikey_new(text, uuid) IS
'Internal. Returns a new key (with the given prefix, or a random one; ending in the owner''s bucket with authx.shard_tokens on), its prefix and its sha256.';

-- Internal: the checks shared by apikey_create and apikey_update.
CREATE FUNCTION authx._apikey_check(p_name text, p_expires_at timestamptz, p_rate_limit integer,
                                    p_rate_window interval, p_remaining integer,
                                    p_refill_amount integer, p_refill_interval interval)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_name IS NOT NULL AND (length(btrim(p_name)) NOT BETWEEN 1 AND 200 OR p_name ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid key name',
            HINT = 'A key name has 1-200 characters and no control characters.';
    END IF;
    IF p_expires_at IS NOT NULL AND p_expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'expires_at is in the past',
            HINT = 'Pass a future time, or NULL for a key that does not expire.';
    END IF;
    IF p_rate_limit IS NOT NULL AND p_rate_limit <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'rate_limit must be positive',
            HINT = 'Pass the number of verifications allowed per rate_window, or NULL for no limit.';
    END IF;
    IF p_rate_window IS NOT NULL AND (p_rate_window < interval '1 second' OR p_rate_window > interval '366 days') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'rate_window must be between 1 second and 366 days',
            HINT = 'Pass a window such as ''1 minute''.';
    END IF;
    IF p_remaining IS NOT NULL AND p_remaining < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'remaining must not be negative',
            HINT = 'Pass the number of uses left, or NULL for unlimited uses.';
    END IF;
    IF (p_refill_amount IS NULL) <> (p_refill_interval IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'refill_amount and refill_interval go together',
            HINT = 'Pass both (e.g. 1000 uses every ''1 day'') or neither.';
    END IF;
    IF p_refill_amount IS NOT NULL AND p_refill_amount <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'refill_amount must be positive',
            HINT = 'Pass the number of uses the key gets back every refill_interval.';
    END IF;
    IF p_refill_interval IS NOT NULL AND p_refill_interval < interval '1 second' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'refill_interval must be at least 1 second',
            HINT = 'Pass an interval such as ''1 day''.';
    END IF;
END
$$;
COMMENT ON FUNCTION authx._apikey_check(text, timestamptz, integer, interval, integer, integer, interval) IS
'Internal. Raises 22023 for a bad key name, past expiry, non-positive limit, bad window, negative remaining or half a refill.';

CREATE FUNCTION authx.apikey_create(user_id uuid, name text, scopes text[] DEFAULT '{}',
                                    expires_at timestamptz DEFAULT NULL,
                                    rate_limit integer DEFAULT NULL,
                                    rate_window interval DEFAULT '1 minute',
                                    remaining integer DEFAULT NULL,
                                    refill_amount integer DEFAULT NULL,
                                    refill_interval interval DEFAULT NULL)
RETURNS TABLE (key_id uuid, api_key text)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_scopes text[] := authx._permissions_normalize(apikey_create.scopes, 'scope');
    v_status text;
    v_remaining integer := coalesce(apikey_create.remaining, apikey_create.refill_amount);
    v_id     uuid;
    k        record;
BEGIN
    PERFORM authx._require(apikey_create.user_id, 'user_id');
    PERFORM authx._require(apikey_create.name, 'name');
    PERFORM authx._require(apikey_create.rate_window, 'rate_window');
    PERFORM authx._apikey_check(apikey_create.name, apikey_create.expires_at, apikey_create.rate_limit,
                                apikey_create.rate_window, apikey_create.remaining,
                                apikey_create.refill_amount, apikey_create.refill_interval);
    SELECT u.status INTO v_status FROM authx.users u
     WHERE u.id = apikey_create.user_id AND u.deleted_at IS NULL FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('user "%s" does not exist', apikey_create.user_id),
            HINT = 'API keys can only be created for live users.';
    ELSIF v_status = 'disabled' THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('user "%s" is disabled', apikey_create.user_id),
            HINT = 'Enable the user with authx.user_enable first.';
    END IF;
    -- 48 random bits of prefix: a collision is rare, and retried.
    FOR i IN 1..5 LOOP
        k := authx._apikey_new(NULL, apikey_create.user_id);
        BEGIN
            INSERT INTO authx.api_keys (prefix, key_hash, user_id, name, scopes, expires_at, rate_limit,
                                        rate_window, remaining, refill_amount, refill_interval, refilled_at)
            VALUES (k.key_prefix, k.key_hash, apikey_create.user_id, btrim(apikey_create.name), v_scopes,
                    apikey_create.expires_at, apikey_create.rate_limit, apikey_create.rate_window,
                    v_remaining, apikey_create.refill_amount, apikey_create.refill_interval,
                    CASE WHEN apikey_create.refill_interval IS NOT NULL THEN now() END)
            RETURNING id INTO v_id;
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            IF i = 5 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    PERFORM authx._audit_tx('apikey.created', 'info', apikey_create.user_id,
                            jsonb_build_object('key_id', v_id, 'prefix', k.key_prefix,
                                               'name', btrim(apikey_create.name), 'scopes', v_scopes,
                                               'expires_at', apikey_create.expires_at));
    RETURN QUERY SELECT v_id, k.api_key;
END
$$;
COMMENT ON FUNCTION authx.apikey_create(uuid, text, text[], timestamptz, integer, interval, integer, integer, interval) IS
'Creates an API key and returns its id and the key (axk_<prefix>_<secret>), shown once and never stored. rate_limit verifications per rate_window; remaining uses, set back to refill_amount every refill_interval. Raises P0002 for a missing user, 55000 for a disabled one, 22023 for bad arguments.';

-- The answer of apikey_verify.  A named row type rather than OUT
-- parameters: the executor then takes the row descriptor from the type
-- cache instead of rebuilding it from the function's arguments on every
-- execution, which costs as much as the verification itself.
CREATE TYPE authx.apikey_verification AS (
    code                 text,
    key_id               uuid,
    user_id              uuid,
    scopes               text[],
    remaining            integer,
    rate_limit_remaining integer,
    retry_after          interval
);
COMMENT ON TYPE authx.apikey_verification IS
'The answer of authx.apikey_verify: code, and for a key that exists its id, owner, scopes, uses left, rate-limit allowance left and (rate_limited) when to retry.';

-- One row, always.
CREATE FUNCTION authx.apikey_verify(api_key text, scope text DEFAULT NULL, cost integer DEFAULT 1,
                                    ip inet DEFAULT NULL)
RETURNS authx.apikey_verification
AS 'MODULE_PATHNAME', 'authx_apikey_verify'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authx.apikey_verify(text, text, integer, inet) IS
'Verifies an API key: code is valid, not_found, revoked, expired, disabled (owner disabled or deleted), insufficient_scope, rate_limited (retry_after set, NULL when the cost exceeds the whole limit), usage_exceeded, or blocked (ip is blocked; the key is not looked at). With an ip, keys not found count for the threat rules on apikey.not_found. A valid answer spends cost from the rate limit and the remaining uses (cost 0 spends and checks neither). Never raises on a malformed key; raises 22023 for a malformed scope or a negative cost.';

-- Internal: spend p_cost uses, after a refill if one is due, under the row
-- lock.  The locked row is the latest: a revocation, expiry or owner
-- disabling that committed while we waited for the lock wins.  Called by
-- apikey_verify as the table owner.
CREATE FUNCTION authx._apikey_consume(p_id uuid, p_cost integer, p_now timestamptz,
                                      OUT code text, OUT remaining integer)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k       authx.api_keys;
    v_at    timestamptz;
    v_step  interval;
BEGIN
    SELECT * INTO k FROM authx.api_keys WHERE id = p_id FOR NO KEY UPDATE;
    IF NOT FOUND OR k.revoked_at IS NOT NULL THEN
        code := 'revoked';
        RETURN;
    ELSIF k.expires_at <= p_now THEN
        code := 'expired';
        RETURN;
    ELSIF k.owner_disabled THEN
        code := 'disabled';
        RETURN;
    END IF;
    remaining := k.remaining;
    v_at := k.refilled_at;
    -- Intervals count as fixed lengths (a day is 24 hours, a month 30
    -- days), whatever the session's TimeZone, as in apikey_verify's C.
    v_step := make_interval(secs => extract(epoch FROM k.refill_interval));
    IF k.refill_interval IS NOT NULL AND p_now >= k.refilled_at + v_step THEN
        remaining := k.refill_amount;
        -- Whole intervals since the last refill: a key idle for a week gets
        -- one refill, on the interval grid it started on.
        v_at := k.refilled_at + v_step
                * floor(extract(epoch FROM p_now - k.refilled_at) / extract(epoch FROM v_step));
        IF v_at > p_now THEN
            v_at := p_now;
        END IF;
    END IF;
    IF remaining IS NULL OR remaining < p_cost THEN
        code := 'usage_exceeded';    -- nothing written: spamming a spent key costs no WAL
        RETURN;
    END IF;
    remaining := remaining - p_cost;
    UPDATE authx.api_keys SET remaining = _apikey_consume.remaining, refilled_at = v_at, last_used_at = p_now
     WHERE id = p_id;
    code := 'valid';
END
$$;
COMMENT ON FUNCTION authx._apikey_consume(uuid, integer, timestamptz) IS
'Internal. Spends uses of a metered key under its row lock (refilling first when due); code is valid, usage_exceeded (remaining = what is left), revoked, expired or disabled as the locked row says.';

-- Internal: last_used_at, at most once per authx.touch_interval, never
-- waiting for a row someone else holds.
CREATE FUNCTION authx._apikey_touch(p_id uuid, p_now timestamptz)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE authx.api_keys SET last_used_at = p_now
     WHERE id = (SELECT k.id FROM authx.api_keys k WHERE k.id = p_id FOR NO KEY UPDATE SKIP LOCKED);
$$;
COMMENT ON FUNCTION authx._apikey_touch(uuid, timestamptz) IS 'Internal. Sets last_used_at unless the row is locked by someone else.';

-- Internal: the row to change, locked, or P0002.
CREATE FUNCTION authx._apikey_lock(p_key_id uuid)
RETURNS authx.api_keys
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k authx.api_keys;
BEGIN
    PERFORM authx._require(p_key_id, 'key_id');
    SELECT * INTO k FROM authx.api_keys WHERE id = p_key_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('API key "%s" does not exist', p_key_id),
            HINT = 'List a user''s keys with authx.apikey_list.';
    END IF;
    RETURN k;
END
$$;
COMMENT ON FUNCTION authx._apikey_lock(uuid) IS 'Internal. Returns the key row locked for update; raises P0002 when missing.';

CREATE FUNCTION authx.apikey_rotate(key_id uuid, grace interval DEFAULT '0')
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     authx.api_keys := authx._apikey_lock(apikey_rotate.key_id);
    n     record;
BEGIN
    PERFORM authx._require(grace, 'grace');
    IF grace < interval '0' OR grace > interval '30 days' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'grace must be between 0 and 30 days',
            HINT = 'Pass how long the old key keeps working, e.g. ''1 hour''.';
    END IF;
    IF k.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('API key "%s" is revoked', k.id),
            HINT = 'Create a new key with authx.apikey_create.';
    END IF;
    n := authx._apikey_new(k.prefix, k.user_id);
    -- The secret before this one (a rotation within a grace) stops now.
    UPDATE authx.api_keys SET key_hash = n.key_hash, prev_hash = k.key_hash,
           prev_until = clock_timestamp() + grace, updated_at = now()
     WHERE id = k.id;
    PERFORM authx._audit_tx('apikey.rotated', 'medium', k.user_id,
                            jsonb_build_object('key_id', k.id, 'prefix', k.prefix, 'grace', grace));
    RETURN n.api_key;
END
$$;
COMMENT ON FUNCTION authx.apikey_rotate(uuid, interval) IS
'Gives the key a new secret (same id and prefix) and returns it, shown once. The old secret keeps working for grace, then answers revoked. Raises P0002 for an unknown key, 55000 for a revoked one, 22023 for a bad grace.';

CREATE FUNCTION authx.apikey_revoke(key_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k authx.api_keys;
BEGIN
    PERFORM authx._require(apikey_revoke.key_id, 'key_id');
    UPDATE authx.api_keys a SET revoked_at = now(), revoke_reason = 'revoked', updated_at = now()
     WHERE a.id = apikey_revoke.key_id AND a.revoked_at IS NULL
    RETURNING a.* INTO k;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('apikey.revoked', 'medium', k.user_id,
                            jsonb_build_object('key_id', k.id, 'prefix', k.prefix));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.apikey_revoke(uuid) IS
'Revokes the key (and a rotated-out secret still in its grace) for good; false when unknown or already revoked.';

CREATE FUNCTION authx.apikey_update(key_id uuid, name text DEFAULT NULL, scopes text[] DEFAULT NULL,
                                    expires_at timestamptz DEFAULT NULL,
                                    rate_limit integer DEFAULT NULL, rate_window interval DEFAULT NULL,
                                    remaining integer DEFAULT NULL,
                                    refill_amount integer DEFAULT NULL, refill_interval interval DEFAULT NULL,
                                    clear text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k         authx.api_keys := authx._apikey_lock(apikey_update.key_id);
    v_bad     text;
    v_changed text[] := '{}';
    v_clear   text[] := coalesce(apikey_update.clear, '{}');
BEGIN
    SELECT c INTO v_bad FROM unnest(v_clear) c
     WHERE c IS NULL OR c NOT IN ('expires_at', 'rate_limit', 'remaining', 'refill');
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('cannot clear "%s"', coalesce(v_bad, 'NULL')),
            HINT = 'clear takes any of expires_at, rate_limit, remaining, refill.';
    END IF;
    PERFORM authx._apikey_check(apikey_update.name, apikey_update.expires_at, apikey_update.rate_limit,
                                apikey_update.rate_window, apikey_update.remaining,
                                apikey_update.refill_amount, apikey_update.refill_interval);
    IF apikey_update.name IS NOT NULL THEN
        k.name := btrim(apikey_update.name); v_changed := v_changed || 'name'::text;
    END IF;
    IF apikey_update.scopes IS NOT NULL THEN
        k.scopes := authx._permissions_normalize(apikey_update.scopes, 'scope'); v_changed := v_changed || 'scopes'::text;
    END IF;
    IF apikey_update.expires_at IS NOT NULL OR 'expires_at' = ANY (v_clear) THEN
        k.expires_at := apikey_update.expires_at; v_changed := v_changed || 'expires_at'::text;
    END IF;
    IF apikey_update.rate_limit IS NOT NULL OR 'rate_limit' = ANY (v_clear) THEN
        k.rate_limit := apikey_update.rate_limit; v_changed := v_changed || 'rate_limit'::text;
    END IF;
    IF apikey_update.rate_window IS NOT NULL THEN
        k.rate_window := apikey_update.rate_window; v_changed := v_changed || 'rate_window'::text;
    END IF;
    IF 'refill' = ANY (v_clear) THEN
        k.refill_amount := NULL; k.refill_interval := NULL; k.refilled_at := NULL;
        v_changed := v_changed || 'refill'::text;
    END IF;
    IF apikey_update.refill_amount IS NOT NULL THEN
        k.refill_amount := apikey_update.refill_amount; k.refill_interval := apikey_update.refill_interval;
        k.refilled_at := now(); k.remaining := coalesce(k.remaining, apikey_update.refill_amount);
        v_changed := v_changed || 'refill'::text;
    END IF;
    IF apikey_update.remaining IS NOT NULL OR 'remaining' = ANY (v_clear) THEN
        k.remaining := apikey_update.remaining; v_changed := v_changed || 'remaining'::text;
    END IF;
    IF k.refill_interval IS NOT NULL AND k.remaining IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'a key that refills needs remaining uses',
            HINT = 'Clear the refill as well (clear => ''{remaining,refill}''), or set remaining.';
    END IF;
    IF cardinality(v_changed) = 0 THEN
        RETURN;
    END IF;
    UPDATE authx.api_keys a
       SET name = k.name, scopes = k.scopes, expires_at = k.expires_at, rate_limit = k.rate_limit,
           rate_window = k.rate_window, remaining = k.remaining, refill_amount = k.refill_amount,
           refill_interval = k.refill_interval, refilled_at = k.refilled_at, updated_at = now()
     WHERE a.id = k.id;
    PERFORM authx._audit_tx('apikey.updated', 'info', k.user_id,
                            jsonb_build_object('key_id', k.id, 'prefix', k.prefix, 'changed', v_changed));
END
$$;
COMMENT ON FUNCTION authx.apikey_update(uuid, text, text[], timestamptz, integer, interval, integer, integer, interval, text[]) IS
'Changes a key''s name, scopes, expiry, rate limit, remaining uses or refill; NULL leaves a setting as it is, clear lists settings to remove (expires_at, rate_limit, remaining, refill). Raises P0002 for an unknown key, 22023 for bad values.';

CREATE FUNCTION authx.apikey_list(user_id uuid)
RETURNS TABLE (key_id uuid, prefix text, name text, scopes text[], status text, created_at timestamptz,
               last_used_at timestamptz, expires_at timestamptz, revoked_at timestamptz,
               rate_limit integer, rate_window interval, remaining integer,
               refill_amount integer, refill_interval interval, rotated_grace_until timestamptz)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.id, k.prefix, k.name, k.scopes,
           CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
                WHEN k.expires_at <= clock_timestamp() THEN 'expired'
                WHEN k.owner_disabled THEN 'disabled'
                ELSE 'active' END,
           k.created_at, k.last_used_at, k.expires_at, k.revoked_at, k.rate_limit, k.rate_window,
           CASE WHEN k.refill_interval IS NOT NULL
                     AND clock_timestamp() >= k.refilled_at + make_interval(secs => extract(epoch FROM k.refill_interval))
                THEN k.refill_amount ELSE k.remaining END,
           k.refill_amount, k.refill_interval,
           CASE WHEN k.prev_until > clock_timestamp() AND k.revoked_at IS NULL THEN k.prev_until END
      FROM authx.api_keys k
     WHERE k.user_id = apikey_list.user_id
     ORDER BY k.created_at DESC, k.id;
$$;
COMMENT ON FUNCTION authx.apikey_list(uuid) IS
'Lists a user''s keys, newest first: prefix, name, scopes, status (active, revoked, expired, disabled), dates, limits and uses left; never a key or a hash.';

CREATE FUNCTION authx._apikey_usage_pending(key_id uuid)
RETURNS TABLE (hour timestamptz, code text, count bigint)
AS 'MODULE_PATHNAME', 'authx_apikey_usage_pending'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx._apikey_usage_pending(uuid) IS
'Internal. Returns the key''s verification counts still in shared memory (not yet persisted); none without shared_preload_libraries.';

CREATE FUNCTION authx.apikey_usage(key_id uuid, since timestamptz DEFAULT now() - interval '1 day')
RETURNS TABLE (code text, count bigint)
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.code, sum(u.count)::bigint
      FROM (SELECT a.code, a.count FROM authx.api_key_usage a
             WHERE a.key_id = apikey_usage.key_id AND a.hour >= date_trunc('hour', apikey_usage.since, 'UTC')
            UNION ALL
            SELECT p.code, p.count FROM authx._apikey_usage_pending(apikey_usage.key_id) p
             WHERE p.hour >= date_trunc('hour', apikey_usage.since, 'UTC')) u
     GROUP BY u.code ORDER BY u.code;
$$;
COMMENT ON FUNCTION authx.apikey_usage(uuid, timestamptz) IS
'Returns how many verifications of the key answered each code since the start of the (UTC) hour holding since (counts are kept per hour). Includes counts not yet persisted.';

-- Housekeeping called by maintenance_run: keys revoked or expired more than
-- 30 days ago (their usage rows go with them) and usage older than 90 days.
CREATE FUNCTION authx._apikeys_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys  bigint;
    v_usage bigint;
BEGIN
    DELETE FROM authx.api_keys k
     WHERE k.id IN (SELECT o.id FROM authx.api_keys o
                     WHERE o.revoked_at < p_now - interval '30 days' OR o.expires_at < p_now - interval '30 days'
                     LIMIT 10000);
    GET DIAGNOSTICS v_keys = ROW_COUNT;
    DELETE FROM authx.api_key_usage a WHERE a.hour < p_now - interval '90 days';
    GET DIAGNOSTICS v_usage = ROW_COUNT;
    RETURN jsonb_build_object('keys_deleted', v_keys, 'usage_rows_deleted', v_usage);
END
$$;
COMMENT ON FUNCTION authx._apikeys_purge(timestamptz) IS
'Internal. Deletes keys revoked or expired more than 30 days before p_now (10000 a pass) and usage rows older than 90 days.';
