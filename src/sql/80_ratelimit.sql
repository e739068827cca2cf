-- ================================================================
-- Rate limits (src/ratelimit.c)
-- ================================================================

-- The answer of rate_limit, rate_peek and rate_check (a named row type:
-- see authx.apikey_verification for why).
CREATE TYPE authx.rate_limit_result AS (
    allowed     boolean,
    remaining   integer,
    reset_after interval,
    retry_after interval
);
COMMENT ON TYPE authx.rate_limit_result IS
'allowed; remaining requests (of cost 1) in the window after this one; reset_after = until the bucket is full again; retry_after = until this request would pass (NULL when allowed, or when it never can: cost above the limit).';

CREATE FUNCTION authx.rate_limit(subject text, max integer, per interval, cost integer DEFAULT 1)
RETURNS authx.rate_limit_result
AS 'MODULE_PATHNAME', 'authx_rate_limit'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.rate_limit(text, integer, interval, integer) IS
'Spends cost from the bucket of subject allowing max per interval (GCRA in shared memory: exact under concurrency, not undone by ROLLBACK). Raises 22004 for NULL arguments, 22023 for max < 1, per outside 1 ms-366 days or a negative cost.';

CREATE FUNCTION authx.rate_peek(subject text, max integer, per interval)
RETURNS authx.rate_limit_result
AS 'MODULE_PATHNAME', 'authx_rate_peek'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.rate_peek(text, integer, interval) IS
'The answer rate_limit(subject, max, per) would give now, without spending anything.';

CREATE TABLE authx.rate_limit_policies (
    name        text COLLATE "C" PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    max         integer NOT NULL CHECK (max > 0),
    per         interval NOT NULL CHECK (extract(epoch FROM per) BETWEEN 0.001 AND 31622400),
    store       text NOT NULL DEFAULT 'local' CHECK (store IN ('local', 'redis')),
    fail_mode   text NOT NULL DEFAULT 'local' CHECK (fail_mode IN ('local', 'open', 'closed')),
    description text,
    seeded      boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE authx.rate_limit_policies IS
'Named limits used by authx.rate_check: max requests per interval. store is where buckets live (local: this server''s shared memory; redis: authx.rate_limit_redis_url or else authx.redis_url, shared by every server using it); fail_mode is what a redis policy does when Redis cannot answer (local: decide in shared memory, open: allow, closed: deny).';
INSERT INTO authx.rate_limit_policies (name, max, per, description, seeded) VALUES
    ('login', 5, '1 minute', 'Login attempts per address and per account.', true),
    ('register', 3, '1 minute', 'Sign-ups per address.', true),
    ('refresh', 10, '1 minute', 'Token refreshes per session family.', true),
    ('mfa', 5, '1 minute', 'MFA code attempts per account.', true),
    ('api', 100, '1 minute', 'API requests per key or address.', true);
SELECT pg_catalog.pg_extension_config_dump('authx.rate_limit_policies', 'WHERE NOT seeded');

-- Editing a seeded row (a policy, a threat rule) makes it the user's:
-- dumped, and restored as edited.
CREATE FUNCTION authx._unseed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.seeded := false;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION authx._unseed() IS 'Internal. Trigger: an edited seed row (policy, threat rule) is dumped like any other.';

CREATE TRIGGER rate_limit_policies_unseed BEFORE UPDATE ON authx.rate_limit_policies
FOR EACH ROW WHEN (OLD.seeded) EXECUTE FUNCTION authx._unseed();

-- A restore: CREATE EXTENSION has made the seeds again, then the dump's
-- COPY brings the edited one under the same name.  The edit wins: it is
-- written over the seed (which keeps its overrides) instead of colliding.
CREATE FUNCTION authx._rate_policy_merge_seed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE authx.rate_limit_policies p
       SET max = NEW.max, per = NEW.per, store = NEW.store, fail_mode = NEW.fail_mode,
           description = coalesce(NEW.description, p.description), seeded = false
     WHERE p.name = NEW.name AND p.seeded;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION authx._rate_policy_merge_seed() IS
'Internal. Trigger: a non-seed row named like a seed policy is written over the seed (a restore of an edited seed).';

CREATE TRIGGER rate_limit_policies_merge_seed BEFORE INSERT ON authx.rate_limit_policies
FOR EACH ROW WHEN (NOT NEW.seeded) EXECUTE FUNCTION authx._rate_policy_merge_seed();

CREATE TABLE authx.rate_limit_overrides (
    policy     text COLLATE "C" NOT NULL REFERENCES authx.rate_limit_policies (name) ON DELETE CASCADE ON UPDATE CASCADE,
    subject    text NOT NULL CHECK (length(subject) BETWEEN 1 AND 500),
    max        integer CHECK (max > 0),
    per        interval CHECK (extract(epoch FROM per) BETWEEN 0.001 AND 31622400),
    bypass     boolean NOT NULL DEFAULT false,
    expires_at timestamptz,
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (policy, subject),
    CHECK (bypass OR max IS NOT NULL)
);
COMMENT ON TABLE authx.rate_limit_overrides IS
'Per-subject exceptions to a policy: another max (and per), or bypass (never limited), until expires_at if set.';
SELECT pg_catalog.pg_extension_config_dump('authx.rate_limit_overrides', '');

-- Each backend keeps a copy of the policies (and threat rules), good until
-- a change to them commits (src/policy.c).
CREATE FUNCTION authx._policy_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_policy_changed'
LANGUAGE C;
COMMENT ON FUNCTION authx._policy_changed() IS
'Internal. Trigger: the backends'' copies of policies, overrides and threat rules are stale once this transaction commits.';

CREATE TRIGGER rate_limit_policies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON authx.rate_limit_policies FOR EACH STATEMENT EXECUTE FUNCTION authx._policy_changed();
CREATE TRIGGER rate_limit_overrides_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON authx.rate_limit_overrides FOR EACH STATEMENT EXECUTE FUNCTION authx._policy_changed();

CREATE FUNCTION authx.rate_check(policy text, subject text, cost integer DEFAULT 1)
RETURNS authx.rate_limit_result
AS 'MODULE_PATHNAME', 'authx_rate_check'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.rate_check(text, text, integer) IS
'rate_limit with the named policy''s limit, store and fail_mode, or the subject''s override (bypass: always allowed, remaining NULL). Raises 42704 for an unknown policy, 22004 for NULL arguments, 22023 for a negative cost.';

-- Requests that name an account (login, password reset) spend the policy
-- per address (IPv6: per /64) and per email, known or not, before any
-- lookup: NULL when the policy was deleted, else the address's answer if it
-- refused, otherwise the email's.
CREATE FUNCTION authx._rate_check_ip_email(p_policy text, p_ip inet, p_email text)
RETURNS authx.rate_limit_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rl authx.rate_limit_result;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM authx.rate_limit_policies p WHERE p.name = p_policy) THEN
        RETURN NULL;
    END IF;
    IF p_ip IS NOT NULL THEN
        v_rl := authx.rate_check(p_policy, 'ip:' || authx._ip_key(p_ip)::text);
        IF NOT v_rl.allowed THEN
            RETURN v_rl;
        END IF;
    END IF;
    RETURN authx.rate_check(p_policy, 'email:' || p_email);
END
$$;
COMMENT ON FUNCTION authx._rate_check_ip_email(text, inet, text) IS
'Internal. A policy spent per address and per email (login, password_reset): NULL without the policy, else the first refusal or the email''s answer.';

CREATE FUNCTION authx.rate_policy_set(name text, max integer, per interval, fail_mode text DEFAULT 'local',
                                      description text DEFAULT NULL, store text DEFAULT 'local')
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(rate_policy_set.name, 'name');
    PERFORM authx._require(rate_policy_set.max, 'max');
    PERFORM authx._require(rate_policy_set.per, 'per');
    IF rate_policy_set.name !~ '^[a-z][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid policy name "%s"', rate_policy_set.name),
            HINT = 'A policy name starts with a lowercase letter and has at most 63 of a-z, 0-9, _ . -';
    END IF;
    IF rate_policy_set.max < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'max must be at least 1',
            HINT = 'Pass how many requests the window allows.';
    END IF;
    -- Counted as rate_limit counts it: a year is 365.25 days, a month 30.
    IF extract(epoch FROM rate_policy_set.per) NOT BETWEEN 0.001 AND 31622400 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'per must be between 1 millisecond and 366 days',
            HINT = 'Pass a window such as ''1 minute''.';
    END IF;
    IF rate_policy_set.fail_mode IS NULL OR rate_policy_set.fail_mode NOT IN ('local', 'open', 'closed') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid fail_mode "%s"', coalesce(rate_policy_set.fail_mode, 'NULL')),
            HINT = 'fail_mode is local, open or closed.';
    END IF;
    IF rate_policy_set.store IS NULL OR rate_policy_set.store NOT IN ('local', 'redis') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid store "%s"', coalesce(rate_policy_set.store, 'NULL')),
            HINT = 'store is local (this server''s shared memory) or redis (shared through authx.redis_url).';
    END IF;
    INSERT INTO authx.rate_limit_policies AS rp (name, max, per, store, fail_mode, description)
    VALUES (rate_policy_set.name, rate_policy_set.max, rate_policy_set.per, rate_policy_set.store,
            rate_policy_set.fail_mode, rate_policy_set.description)
    ON CONFLICT ON CONSTRAINT rate_limit_policies_pkey DO UPDATE
       SET max = EXCLUDED.max, per = EXCLUDED.per, store = EXCLUDED.store, fail_mode = EXCLUDED.fail_mode,
           description = coalesce(EXCLUDED.description, rp.description);
    PERFORM authx._audit_tx('rate_limit.policy_set', 'medium', NULL,
                            jsonb_build_object('policy', rate_policy_set.name, 'max', rate_policy_set.max,
                                               'per_ms', (extract(epoch FROM rate_policy_set.per) * 1000)::bigint,
                                               'store', rate_policy_set.store,
                                               'fail_mode', rate_policy_set.fail_mode));
END
$$;
COMMENT ON FUNCTION authx.rate_policy_set(text, integer, interval, text, text, text) IS
'Creates or changes a rate-limit policy (admin); store local or redis. Buckets are per (subject, max, per): a changed limit uses fresh buckets (switching back finds the old ones if still live). Raises 22023 for bad values.';

CREATE FUNCTION authx.rate_override_set(policy text, subject text, max integer DEFAULT NULL,
                                        per interval DEFAULT NULL, bypass boolean DEFAULT false,
                                        expires_at timestamptz DEFAULT NULL, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(rate_override_set.policy, 'policy');
    PERFORM authx._require(rate_override_set.subject, 'subject');
    IF NOT EXISTS (SELECT 1 FROM authx.rate_limit_policies rp WHERE rp.name = rate_override_set.policy) THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('rate limit policy "%s" does not exist', rate_override_set.policy),
            HINT = 'See authx.rate_limit_policies.';
    END IF;
    IF NOT coalesce(rate_override_set.bypass, false) AND rate_override_set.max IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'an override needs max or bypass',
            HINT = 'Pass max (and optionally per) for another limit, or bypass => true.';
    END IF;
    IF rate_override_set.max IS NOT NULL AND rate_override_set.max < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'max must be at least 1',
            HINT = 'Pass how many requests the window allows.';
    END IF;
    IF rate_override_set.per IS NOT NULL
       AND extract(epoch FROM rate_override_set.per) NOT BETWEEN 0.001 AND 31622400 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'per must be between 1 millisecond and 366 days',
            HINT = 'Pass a window such as ''1 minute'', or NULL for the policy''s.';
    END IF;
    IF rate_override_set.expires_at IS NOT NULL AND rate_override_set.expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'expires_at is in the past',
            HINT = 'Pass a future time, or NULL for an override that does not expire.';
    END IF;
    IF length(rate_override_set.subject) NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'subject must have 1-500 characters',
            HINT = 'Pass the subject exactly as the application passes it to rate_check.';
    END IF;
    INSERT INTO authx.rate_limit_overrides AS ro (policy, subject, max, per, bypass, expires_at, reason)
    VALUES (rate_override_set.policy, rate_override_set.subject, rate_override_set.max, rate_override_set.per,
            coalesce(rate_override_set.bypass, false), rate_override_set.expires_at, rate_override_set.reason)
    ON CONFLICT ON CONSTRAINT rate_limit_overrides_pkey DO UPDATE
       SET max = EXCLUDED.max, per = EXCLUDED.per, bypass = EXCLUDED.bypass,
           expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason, created_at = now();
    PERFORM authx._audit_tx('rate_limit.override_set', 'medium', NULL,
                            jsonb_build_object('policy', rate_override_set.policy, 'subject', rate_override_set.subject,
                                               'max', rate_override_set.max, 'bypass', coalesce(rate_override_set.bypass, false),
                                               'expires_at', rate_override_set.expires_at));
END
$$;
COMMENT ON FUNCTION authx.rate_override_set(text, text, integer, interval, boolean, timestamptz, text) IS
'Gives one subject of a policy another limit, or bypass (admin), until expires_at if set; setting it again replaces it. Raises 42704 for an unknown policy, 22023 for bad values.';

CREATE FUNCTION authx.rate_override_remove(policy text, subject text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(rate_override_remove.policy, 'policy');
    PERFORM authx._require(rate_override_remove.subject, 'subject');
    DELETE FROM authx.rate_limit_overrides ro
     WHERE ro.policy = rate_override_remove.policy AND ro.subject = rate_override_remove.subject;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('rate_limit.override_removed', 'medium', NULL,
                            jsonb_build_object('policy', rate_override_remove.policy,
                                               'subject', rate_override_remove.subject));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.rate_override_remove(text, text) IS 'Removes a subject''s override (admin); false when there was none.';

-- Housekeeping called by maintenance_run: overrides past their expiry.
CREATE FUNCTION authx._ratelimit_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    DELETE FROM authx.rate_limit_overrides ro WHERE ro.expires_at <= p_now;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN jsonb_build_object('overrides_expired', v_n);
END
$$;
COMMENT ON FUNCTION authx._ratelimit_purge(timestamptz) IS 'Internal. Deletes rate-limit overrides that have expired (they stopped counting already).';
