-- ================================================================
-- Scale-out (src/shard.c): buckets, the email directory on data nodes,
-- and the routing functions a coordinator makes with PL/Proxy.
-- ================================================================

CREATE FUNCTION authx.shard_of(user_id uuid, buckets integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'authx_shard_of'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authx.shard_of(uuid, integer) IS
'The bucket of a user: jump consistent hash of (first 8 bytes XOR last 8 bytes of the id, big-endian) into buckets (default authx.shard_buckets). NULL for NULL; 22023 for buckets not a power of two in 1-65536.';

CREATE FUNCTION authx.shard_of_email(email text, buckets integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'authx_shard_of_email'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authx.shard_of_email(text, integer) IS
'The bucket of an email''s directory entry: jump consistent hash of the first 8 bytes (big-endian) of SHA-256 of lower(btrim(email)) in UTF-8. NULL for NULL.';

-- The bucket a scale-out session token names (".hhhh" at its end), or NULL.
CREATE FUNCTION authx.token_bucket(token text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN token ~ '\.[0-9a-f]{4}$' THEN ('x' || right(token, 4))::bit(16)::integer END $$;
COMMENT ON FUNCTION authx.token_bucket(text) IS
'The bucket a session token made with authx.shard_tokens on ends in, or NULL.';

-- Email -> user, for the addresses whose shard_of_email this node holds
-- (empty on a single node, which needs no directory).
CREATE TABLE authx.email_directory (
    email      text PRIMARY KEY,
    user_id    uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    confirmed  boolean NOT NULL DEFAULT false
);
-- The entries no repair pass has seen the user of yet.
CREATE INDEX email_directory_unconfirmed_idx ON authx.email_directory (created_at) WHERE NOT confirmed;
COMMENT ON TABLE authx.email_directory IS
'Scale-out: which user holds an email (lower-cased, normalized), kept on the node of shard_of_email so that emails stay unique across nodes.';
SELECT pg_catalog.pg_extension_config_dump('authx.email_directory', '');

-- Claims an email for a user: true when it is now (or already was) that
-- user's, false when another user holds it.
CREATE FUNCTION authx._directory_claim(email text, user_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_email text := lower(authx._email_normalize(_directory_claim.email));
    v_owner uuid;
BEGIN
    PERFORM authx._require(_directory_claim.user_id, 'user_id');
    INSERT INTO authx.email_directory AS d (email, user_id) VALUES (v_email, _directory_claim.user_id)
    ON CONFLICT ON CONSTRAINT email_directory_pkey DO NOTHING;
    SELECT d.user_id INTO v_owner FROM authx.email_directory d WHERE d.email = v_email;
    RETURN v_owner = _directory_claim.user_id;
END
$$;
COMMENT ON FUNCTION authx._directory_claim(text, uuid) IS
'Internal (scale-out). Claims an email for a user in this node''s directory: true if it is that user''s now, false if another user holds it.';

CREATE FUNCTION authx._directory_release(email text, user_id uuid)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (
        DELETE FROM authx.email_directory d
         WHERE d.email = lower(authx._email_normalize(_directory_release.email))
           AND d.user_id = _directory_release.user_id
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION authx._directory_release(text, uuid) IS
'Internal (scale-out). Gives an email back (only if that user holds it); true if an entry went.';

-- For the coordinator's repair pass: entries whose user was never seen to
-- exist, older than a minute (a sign-up in flight is not an orphan).
CREATE FUNCTION authx._directory_unconfirmed(max_rows integer DEFAULT 1000)
RETURNS TABLE (email text, user_id uuid)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.email, d.user_id FROM authx.email_directory d
     WHERE NOT d.confirmed AND d.created_at < now() - interval '1 minute'
     ORDER BY d.created_at LIMIT _directory_unconfirmed.max_rows
$$;
COMMENT ON FUNCTION authx._directory_unconfirmed(integer) IS
'Internal (scale-out). Directory entries not yet confirmed and older than a minute, oldest first.';

CREATE FUNCTION authx._directory_confirm(email text, user_id uuid)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (
        UPDATE authx.email_directory d SET confirmed = true
         WHERE d.email = _directory_confirm.email AND d.user_id = _directory_confirm.user_id
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION authx._directory_confirm(text, uuid) IS
'Internal (scale-out). Marks an entry whose user exists, so repair passes skip it.';

CREATE FUNCTION authx._user_live(id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM authx.users u WHERE u.id = _user_live.id AND u.deleted_at IS NULL) $$;
COMMENT ON FUNCTION authx._user_live(uuid) IS
'Internal (scale-out). Whether the account exists here and is not deleted.';

-- Maintenance on a coordinator: the directory repair pass (nothing
-- elsewhere).  A node that cannot be reached is reported, not raised: the
-- rest of the maintenance pass goes on.
CREATE FUNCTION authx._cluster_repair()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF to_regprocedure('authx_cluster.directory_repair()') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT authx_cluster.directory_repair()' INTO v;
    RETURN v;
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLERRM);
END
$$;
COMMENT ON FUNCTION authx._cluster_repair() IS
'Internal (scale-out). On a coordinator, one directory repair pass (authx_cluster.directory_repair); NULL elsewhere; a failure is returned as {"error": ...}.';

CREATE FUNCTION authx._directory_lookup(email text)
RETURNS uuid
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.user_id FROM authx.email_directory d
     WHERE d.email = lower(btrim(_directory_lookup.email, E' \t\r\n'))
$$;
COMMENT ON FUNCTION authx._directory_lookup(text) IS
'Internal (scale-out). The user holding an email in this node''s directory, or NULL (never raises: login routes by it).';

-- ----------------------------------------------------------------
-- Data nodes: what a bucket move asks of the source and the target.
-- ----------------------------------------------------------------

-- The tables holding a bucket's rows, in the order an import fills them
-- (parents first), with the column that names the bucket: a user id
-- (kind user), an email of the directory (email), or an API key's id (key:
-- usage counts, which the worker adds to; a move may miss a few).
CREATE FUNCTION authx._bucket_tables()
RETURNS TABLE (tab regclass, col name, kind text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('authx.users'::regclass, 'id'::name, 'user'),
           ('authx.email_directory', 'email', 'email'),
           ('authx.sessions', 'user_id', 'user'),
           ('authx.api_keys', 'user_id', 'user'),
           ('authx.api_key_usage', 'key_id', 'key'),
           ('authx.user_roles', 'user_id', 'user'),
           ('authx.mfa_totp', 'user_id', 'user'),
           ('authx.mfa_recovery_codes', 'user_id', 'user'),
           ('authx.mfa_challenges', 'user_id', 'user'),
           ('authx.refresh_families', 'user_id', 'user'),
           ('authx.trusted_devices', 'user_id', 'user'),
           ('authx.user_tokens', 'user_id', 'user'),
           ('authx.lockouts', 'user_id', 'user')
$$;
COMMENT ON FUNCTION authx._bucket_tables() IS
'Internal (scale-out). The tables a bucket move copies, parents first, with the column naming the bucket and its kind (user id, directory email, API key id).';

CREATE FUNCTION authx._bucket_fence(bucket integer, fenced boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'authx_bucket_fence'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authx._bucket_fence(integer, boolean) IS
'Internal (scale-out). Fences a bucket on this node (no write may change its rows: 40001) or frees it; returns whether it was fenced; fenced NULL only asks. Held in shared memory until freed or restart.';

CREATE FUNCTION authx._bucket_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_bucket_guard'
LANGUAGE C;
COMMENT ON FUNCTION authx._bucket_guard() IS
'Internal (scale-out). Trigger: refuses (40001) a write to a row of a bucket that is moving away from this node.';

DO $guard$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM authx._bucket_tables() WHERE kind <> 'key' LOOP
        EXECUTE format('CREATE TRIGGER bucket_guard BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION authx._bucket_guard(%L%s)',
                       r.tab, r.col, CASE WHEN r.kind = 'email' THEN ', ''email''' ELSE '' END);
    END LOOP;
END
$guard$;

-- The rows of a bucket on this node, as {"table": [row, ...], ...}.
CREATE FUNCTION authx._bucket_rows(bucket integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r      record;
    v_rows jsonb;
    v_out  jsonb := '{}';
BEGIN
    FOR r IN SELECT * FROM authx._bucket_tables() LOOP
        EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(t)), ''[]'') FROM %s t WHERE %s',
                       r.tab,
                       CASE WHEN r.kind = 'email' THEN format('authx.shard_of_email(t.%I) = $1', r.col)
                            WHEN r.tab = 'authx.users'::regclass THEN 'authx.shard_of(t.id) = $1'
                            WHEN r.kind = 'key' THEN format('t.%I IN (SELECT k.id FROM authx.api_keys k '
                                                            'WHERE authx.shard_of(k.user_id) = $1)', r.col)
                            ELSE format('t.%I IN (SELECT u.id FROM authx.users u WHERE authx.shard_of(u.id) = $1)', r.col)
                       END)
            INTO v_rows USING _bucket_rows.bucket;
        v_out := v_out || jsonb_build_object(r.tab::text, v_rows);
    END LOOP;
    RETURN v_out;
END
$$;
COMMENT ON FUNCTION authx._bucket_rows(integer) IS
'Internal (scale-out). A bucket''s rows on this node, per table, as JSON.';

-- Step 1 on the source: fence the bucket, then wait until every
-- transaction that could have written its rows before the fence is over.
-- Returns a token naming this run of the server (a restart drops fences).
CREATE FUNCTION authx._bucket_quiesce(bucket integer, timeout interval DEFAULT '10 seconds')
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_db       oid := (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
    v_xids     xid[];
    v_deadline timestamptz := clock_timestamp() + _bucket_quiesce.timeout;
BEGIN
    PERFORM authx._bucket_fence(_bucket_quiesce.bucket, true);
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT array_agg(a.backend_xid) INTO v_xids FROM pg_stat_activity a
         WHERE a.datid = v_db AND a.pid <> pg_backend_pid() AND a.backend_xid IS NOT NULL
           AND (v_xids IS NULL OR a.backend_xid = ANY (v_xids));
        EXIT WHEN v_xids IS NULL;
        IF clock_timestamp() > v_deadline THEN
            PERFORM authx._bucket_fence(_bucket_quiesce.bucket, false);
            RAISE EXCEPTION USING ERRCODE = '55P03',
                MESSAGE = format('writers on bucket %s''s node did not finish within %s', _bucket_quiesce.bucket, _bucket_quiesce.timeout),
                HINT = 'Look for long transactions on the source node (pg_stat_activity), or pass a longer timeout.';
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
    RETURN pg_postmaster_start_time()::text;
END
$$;
COMMENT ON FUNCTION authx._bucket_quiesce(integer, interval) IS
'Internal (scale-out). Source side of a move: fences the bucket and waits for the transactions that may have written it; returns a token of this server run. 55P03 (fence lifted) after timeout.';

CREATE FUNCTION authx._bucket_export(bucket integer, token text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF token IS DISTINCT FROM pg_postmaster_start_time()::text OR NOT authx._bucket_fence(bucket, NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('bucket %s is not fenced on this node', bucket),
            HINT = 'The node restarted during the move, or the move was cancelled: start it again.';
    END IF;
    RETURN authx._bucket_rows(bucket)
        || jsonb_build_object('authx.signing_keys',
                              (SELECT coalesce(jsonb_agg(to_jsonb(k)), '[]') FROM authx.signing_keys k));
END
$$;
COMMENT ON FUNCTION authx._bucket_export(integer, text) IS
'Internal (scale-out). Source side of a move: the fenced bucket''s rows (and this node''s signing keys, so access tokens it signed still verify on the target).';

-- Deletes a bucket's rows as rows that leave (no tombstones in Redis: the
-- sessions and keys stay valid on their new node).
CREATE FUNCTION authx._bucket_delete(bucket integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_users bigint;
    v_dir   bigint;
    v_lock  bigint;
BEGIN
    PERFORM set_config('authx.bucket_leaving', 'on', true);
    DELETE FROM authx.lockouts l WHERE authx.shard_of(l.user_id) = bucket;
    GET DIAGNOSTICS v_lock = ROW_COUNT;
    -- Sessions, keys, grants, MFA, devices and tokens follow (ON DELETE CASCADE).
    DELETE FROM authx.users u WHERE authx.shard_of(u.id) = bucket;
    GET DIAGNOSTICS v_users = ROW_COUNT;
    DELETE FROM authx.email_directory d WHERE authx.shard_of_email(d.email) = bucket;
    GET DIAGNOSTICS v_dir = ROW_COUNT;
    PERFORM set_config('authx.bucket_leaving', 'off', true);
    RETURN jsonb_build_object('users', v_users, 'directory', v_dir, 'lockouts', v_lock);
END
$$;
COMMENT ON FUNCTION authx._bucket_delete(integer) IS
'Internal (scale-out). Deletes a bucket''s rows from this node as rows that moved: Redis entries are dropped (bare versions), not tombstoned.';

CREATE FUNCTION authx._bucket_import(bucket integer, data jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       record;
    v_n     bigint;
    v_out   jsonb := '{}';
BEGIN
    IF authx._bucket_fence(_bucket_import.bucket, NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('bucket %s is fenced on this node', _bucket_import.bucket),
            HINT = 'This node is the source of a move of that bucket.';
    END IF;
    -- Leftovers of a move that stopped before its switch.
    PERFORM authx._bucket_delete(_bucket_import.bucket);
    FOR r IN SELECT * FROM authx._bucket_tables() LOOP
        EXECUTE format('INSERT INTO %s SELECT * FROM jsonb_populate_recordset(NULL::%s, $1)', r.tab, r.tab)
            USING coalesce(data -> r.tab::text, '[]');
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_out := v_out || jsonb_build_object(r.tab::text, v_n);
    END LOOP;
    -- Keys that signed the movers' access tokens verify them here too, as
    -- retired keys until those tokens expire.
    INSERT INTO authx.signing_keys AS k
    SELECT s.kid, s.alg, s.public_key, s.private_sealed, s.created_at,
           coalesce(s.retired_at, now()),
           CASE WHEN s.retired_at IS NULL
                THEN now() + authx._setting_interval('authx.token_ttl', '15 minutes') + interval '1 minute'
                ELSE s.verify_until END
      FROM jsonb_populate_recordset(NULL::authx.signing_keys, data -> 'authx.signing_keys') s
    ON CONFLICT (kid) DO NOTHING;
    RETURN v_out;
END
$$;
COMMENT ON FUNCTION authx._bucket_import(integer, jsonb) IS
'Internal (scale-out). Target side of a move: replaces whatever rows of the bucket this node holds with the exported ones; adds the source''s signing keys (retired) it lacks. Returns the row counts.';

CREATE FUNCTION authx._bucket_purge(bucket integer, token text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF token IS DISTINCT FROM pg_postmaster_start_time()::text OR NOT authx._bucket_fence(bucket, NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('bucket %s is not fenced on this node', bucket),
            HINT = 'The source restarted during the move; writes may have reached it after the copy: compare the bucket''s rows on both nodes, then fence it again with authx._bucket_fence and purge with the token pg_postmaster_start_time()::text.';
    END IF;
    v := authx._bucket_delete(bucket);
    PERFORM authx._bucket_fence(bucket, false);
    RETURN v;
END
$$;
COMMENT ON FUNCTION authx._bucket_purge(integer, text) IS
'Internal (scale-out). Source side, last step of a move: deletes the bucket''s rows (moved, not revoked) and lifts the fence.';

-- Cluster-wide definitions (roles, permissions, rate limits, threat rules,
-- address blocks, settings): a new node gets those of an existing one.
CREATE FUNCTION authx._definition_tables()
RETURNS SETOF regclass
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('authx.roles'::regclass), ('authx.role_permissions'), ('authx.rate_limit_policies'),
           ('authx.rate_limit_overrides'), ('authx.threat_rules'), ('authx.ip_blocks'), ('authx.settings')
$$;
COMMENT ON FUNCTION authx._definition_tables() IS
'Internal (scale-out). The tables of cluster-wide definitions, parents first.';

CREATE FUNCTION authx._definitions_export()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     regclass;
    v     jsonb;
    v_out jsonb := '{}';
BEGIN
    FOR t IN SELECT * FROM authx._definition_tables() LOOP
        EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(x)), ''[]'') FROM %s x', t) INTO v;
        v_out := v_out || jsonb_build_object(t::text, v);
    END LOOP;
    RETURN v_out;
END
$$;
COMMENT ON FUNCTION authx._definitions_export() IS
'Internal (scale-out). This node''s cluster-wide definitions, per table, as JSON.';

CREATE FUNCTION authx._definitions_import(data jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     regclass;
    v_n   bigint;
    v_out jsonb := '{}';
BEGIN
    FOR t IN SELECT * FROM authx._definition_tables() LOOP
        EXECUTE format('INSERT INTO %s SELECT * FROM jsonb_populate_recordset(NULL::%s, $1) ON CONFLICT DO NOTHING', t, t)
            USING coalesce(data -> t::text, '[]');
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_out := v_out || jsonb_build_object(t::text, v_n);
    END LOOP;
    RETURN v_out;
END
$$;
COMMENT ON FUNCTION authx._definitions_import(jsonb) IS
'Internal (scale-out). Adds the definitions this node lacks (existing ones are kept); returns how many rows each table gained.';

CREATE FUNCTION authx._key_fingerprint()
RETURNS text
AS 'MODULE_PATHNAME', 'authx_key_fingerprint'
LANGUAGE C STABLE;
COMMENT ON FUNCTION authx._key_fingerprint() IS
'Internal (scale-out). 16 hex digits derived from the master key (revealing nothing of it): nodes that share the key agree, as bucket moves require.';

-- Which user owns a session, key or trusted device (by its id), or NULL.
CREATE FUNCTION authx._owner_of(kind text, id uuid)
RETURNS uuid
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE kind
           WHEN 'session' THEN (SELECT s.user_id FROM authx.sessions s WHERE s.id = _owner_of.id)
           WHEN 'api_key' THEN (SELECT k.user_id FROM authx.api_keys k WHERE k.id = _owner_of.id)
           WHEN 'device' THEN (SELECT d.user_id FROM authx.trusted_devices d WHERE d.id = _owner_of.id)
           END
$$;
COMMENT ON FUNCTION authx._owner_of(text, uuid) IS
'Internal (scale-out). The user owning a session, api_key or device id on this node, or NULL: the coordinator routes calls by id with it.';

-- The Redis this node writes through to, without credentials.
CREATE FUNCTION authx._cache_endpoint()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(regexp_replace(regexp_replace(current_setting('authx.redis_url'), '^([a-z]+://)[^@/]*@', '\1'),
                                 '\?.*$', ''), '')
$$;
COMMENT ON FUNCTION authx._cache_endpoint() IS
'Internal (scale-out). authx.redis_url without user, password or query parameters; NULL when the cache is off.';

CREATE FUNCTION authx.cache_node(token text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text;
BEGIN
    IF to_regprocedure('authx_cluster._cache_endpoint_on(integer)') IS NULL THEN
        RETURN authx._cache_endpoint();
    END IF;
    EXECUTE 'SELECT authx_cluster._cache_endpoint_on($1)' INTO v USING coalesce(authx.token_bucket(token), 0);
    RETURN v;
END
$$;
COMMENT ON FUNCTION authx.cache_node(text) IS
'The Redis (URL without credentials) holding the cache entry of a session token or API key: on a coordinator, that of the node of the bucket the token ends in; elsewhere this node''s. NULL when that node''s cache is off.';

-- The user a JWT names (its sub claim), unverified, or NULL: only for
-- routing token_verify, which then checks everything on the user's node.
CREATE FUNCTION authx._jwt_sub(token text)
RETURNS uuid
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text := split_part(token, '.', 2);
BEGIN
    IF length(token) > 16384 OR p !~ '^[A-Za-z0-9_-]+$' THEN
        RETURN NULL;
    END IF;
    p := translate(p, '-_', '+/') || repeat('=', (4 - length(p) % 4) % 4);
    RETURN (convert_from(decode(p, 'base64'), 'UTF8')::jsonb ->> 'sub')::uuid;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION authx._jwt_sub(text) IS
'Internal (scale-out). The sub claim of a JWT as a uuid, unverified, or NULL for anything else: the coordinator routes token_verify by it.';

-- ----------------------------------------------------------------
-- Coordinator: PL/Proxy routing functions in schema authx_cluster.
-- ----------------------------------------------------------------
CREATE TABLE authx.shard_nodes (
    node     integer PRIMARY KEY CHECK (node >= 0),
    conninfo text NOT NULL
);
COMMENT ON TABLE authx.shard_nodes IS
'Coordinator: the data nodes, numbered from 0, with the libpq connection string PL/Proxy uses (superuser only: it may hold a password).';
SELECT pg_catalog.pg_extension_config_dump('authx.shard_nodes', '');

CREATE TABLE authx.shard_map (
    bucket integer PRIMARY KEY CHECK (bucket >= 0),
    node   integer NOT NULL REFERENCES authx.shard_nodes (node)
);
COMMENT ON TABLE authx.shard_map IS
'Coordinator: the data node of each bucket. Empty on a single node, which holds every bucket itself.';
SELECT pg_catalog.pg_extension_config_dump('authx.shard_map', '');

-- What a coordinator routes: the function called on the node, the name of
-- the proxy in schema authx_cluster, the PL/Proxy RUN ON expression (ALL:
-- every node, through a set-returning proxy and a wrapper).  Tokens that
-- name no bucket, and ids no node knows, go to bucket 0's node, which
-- answers as for any unknown token or id.
CREATE FUNCTION authx._cluster_routes()
RETURNS TABLE (fn regprocedure, proxy name, route text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f::regprocedure, split_part(split_part(f, '(', 1), '.', 2)::name, 'authx.shard_of(user_id)'
      FROM unnest(ARRAY[
        'authx.user_get(uuid)', 'authx.user_disable(uuid)', 'authx.user_enable(uuid)',
        'authx.user_unlock(uuid)', 'authx.password_verify(uuid,text)', 'authx.password_set(uuid,text)',
        'authx.session_create(uuid,inet,text,interval)', 'authx.sessions(uuid)',
        'authx.session_revoke_all(uuid,text)', 'authx.has_permission(uuid,text)', 'authx.user_permissions(uuid)',
        'authx.user_roles(uuid)', 'authx.user_grant(uuid,text,timestamp with time zone)',
        'authx.user_revoke(uuid,text)', 'authx.apikey_create(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval)',
        'authx.apikey_list(uuid)', 'authx.token_issue(uuid,text,jsonb)', 'authx.totp_enroll(uuid,text)',
        'authx.totp_confirm(uuid,text)', 'authx.totp_verify(uuid,text)', 'authx.totp_disable(uuid)',
        'authx.recovery_codes_generate(uuid)', 'authx.recovery_code_use(uuid,text)',
        'authx.device_trust(uuid,text,text,interval)', 'authx.devices(uuid)',
        'authx.email_verification_issue(uuid)']) f
    UNION ALL
    SELECT r.f::regprocedure, r.proxy::name, r.route
      FROM (VALUES ('authx.user_delete(uuid)', '_user_delete_on', 'authx.shard_of(user_id)'),
                   ('authx._user_live(uuid)', '_user_live', 'authx.shard_of(id)'),
                   ('authx._directory_claim(text,uuid)', '_directory_claim', 'authx.shard_of_email(email)'),
                   ('authx._directory_release(text,uuid)', '_directory_release', 'authx.shard_of_email(email)'),
                   ('authx._directory_lookup(text)', '_directory_lookup', 'authx.shard_of_email(email)'),
                   ('authx._directory_confirm(text,uuid)', '_directory_confirm', 'authx.shard_of_email(email)'),
                   ('authx.session_validate(text,inet)', 'session_validate', 'coalesce(authx.token_bucket(token), 0)'),
                   ('authx.session_revoke(text)', 'session_revoke', 'coalesce(authx.token_bucket(token), 0)'),
                   ('authx.session_info(text)', 'session_info', 'coalesce(authx.token_bucket(token), 0)'),
                   ('authx.apikey_verify(text,text,integer,inet)', 'apikey_verify', 'coalesce(authx.token_bucket(api_key), 0)'),
                   ('authx.token_refresh(text,inet)', 'token_refresh', 'coalesce(authx.token_bucket(refresh_token), 0)'),
                   ('authx.login_mfa(text,text,inet,text)', 'login_mfa', 'coalesce(authx.token_bucket(challenge), 0)'),
                   ('authx.email_verification_confirm(text)', 'email_verification_confirm', 'coalesce(authx.token_bucket(token), 0)'),
                   ('authx.password_reset_confirm(text,text)', 'password_reset_confirm', 'coalesce(authx.token_bucket(token), 0)'),
                   ('authx.token_verify(text)', 'token_verify', 'coalesce(authx.shard_of(authx._jwt_sub(access_token)), 0)'),
                   ('authx.login(text,text,inet,text,text)', 'login', 'authx_cluster._email_bucket(email)'),
                   ('authx.user_find(text)', 'user_find', 'authx_cluster._email_bucket(email)'),
                   ('authx.password_reset_issue(text,inet)', 'password_reset_issue', 'authx_cluster._email_bucket(email)'),
                   ('authx.session_revoke_id(uuid)', 'session_revoke_id', 'authx_cluster._owner_bucket(''session'', session_id)'),
                   ('authx.apikey_rotate(uuid,interval)', 'apikey_rotate', 'authx_cluster._owner_bucket(''api_key'', key_id)'),
                   ('authx.apikey_revoke(uuid)', 'apikey_revoke', 'authx_cluster._owner_bucket(''api_key'', key_id)'),
                   ('authx.apikey_update(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval,text[])',
                    'apikey_update', 'authx_cluster._owner_bucket(''api_key'', key_id)'),
                   ('authx.apikey_usage(uuid,timestamp with time zone)', 'apikey_usage', 'authx_cluster._owner_bucket(''api_key'', key_id)'),
                   ('authx.device_revoke(uuid)', 'device_revoke', 'authx_cluster._owner_bucket(''device'', device_id)'),
                   -- Cluster-wide definitions: every node, same call.
                   ('authx.role_create(text,text,text)', 'role_create', 'ALL'),
                   ('authx.role_set_parent(text,text)', 'role_set_parent', 'ALL'),
                   ('authx.role_drop(text)', 'role_drop', 'ALL'),
                   ('authx.role_grant(text,text)', 'role_grant', 'ALL'),
                   ('authx.role_revoke(text,text)', 'role_revoke', 'ALL'),
                   ('authx.ip_block(cidr,interval,text)', 'ip_block', 'ALL'),
                   ('authx.ip_unblock(cidr)', 'ip_unblock', 'ALL'),
                   ('authx.rate_policy_set(text,integer,interval,text,text,text)', 'rate_policy_set', 'ALL'),
                   ('authx.rate_override_set(text,text,integer,interval,boolean,timestamp with time zone,text)',
                    'rate_override_set', 'ALL'),
                   ('authx.rate_override_remove(text,text)', 'rate_override_remove', 'ALL')
           ) r(f, proxy, route)
$$;
COMMENT ON FUNCTION authx._cluster_routes() IS
'Internal (scale-out). The functions a coordinator routes, with the proxy''s name and the RUN ON expression: those taking a user id to the user''s node, the directory to the email''s, login and lookups by email to the node the directory names, tokens and keys to the bucket they end in, ids of sessions, keys and devices to their owner''s node, and cluster-wide definitions (ALL) to every node.';

CREATE FUNCTION authx.cluster_setup(nodes text[])
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $setup$
DECLARE
    v_n       integer := cardinality(cluster_setup.nodes);
    v_buckets integer := current_setting('authx.shard_buckets')::integer;
    v_opts    text;
    r         record;
    v_args    text;
    v_call    text;
    v_names   text;
    v_ret     text;
    v_count   integer := 0;
    v_role    text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'cluster_setup needs a superuser',
            HINT = 'It creates the PL/Proxy server and its connection strings.';
    END IF;
    IF v_n IS NULL OR v_n < 1 OR array_position(cluster_setup.nodes, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'nodes must be a non-empty array of connection strings',
            HINT = 'Pass one libpq connection string per data node, e.g. ARRAY[''host=db1 dbname=app user=authx_proxy''].';
    END IF;
    IF v_n > v_buckets THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('%s nodes but only %s buckets', v_n, v_buckets),
            HINT = 'Raise authx.shard_buckets (a power of two) on every node before the cluster holds data.';
    END IF;
    CREATE EXTENSION IF NOT EXISTS plproxy;

    IF EXISTS (SELECT 1 FROM authx.shard_map) THEN
        -- Set up before: buckets may have moved since, so the map stays;
        -- only the server and the routing functions are made again (after
        -- an upgrade, say), for the same nodes.
        IF cluster_setup.nodes IS DISTINCT FROM (SELECT array_agg(n.conninfo ORDER BY n.node) FROM authx.shard_nodes n) THEN
            RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'this coordinator is set up for other nodes',
                HINT = 'Pass the nodes of authx.shard_nodes, in order, to remake the routing; add nodes with authx.cluster_add_node and move buckets with authx.bucket_move.';
        END IF;
        v_n := (SELECT count(DISTINCT m.node) FROM authx.shard_map m);
    ELSE
        INSERT INTO authx.shard_nodes (node, conninfo)
        SELECT o - 1, c FROM unnest(cluster_setup.nodes) WITH ORDINALITY u(c, o);
        -- Contiguous ranges: bucket b on node floor(b * n / buckets).
        INSERT INTO authx.shard_map (bucket, node)
        SELECT b, (b::bigint * v_n / v_buckets)::integer FROM generate_series(0, v_buckets - 1) b;
    END IF;

    -- One PL/Proxy partition per bucket (PL/Proxy routes by hash & (count - 1)).
    SELECT string_agg(format('p%s %L', m.bucket, n.conninfo), ', ' ORDER BY m.bucket) INTO v_opts
      FROM authx.shard_map m JOIN authx.shard_nodes n USING (node);
    DROP SERVER IF EXISTS authx_cluster CASCADE;
    EXECUTE format('CREATE SERVER authx_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (%s)', v_opts);
    CREATE USER MAPPING FOR PUBLIC SERVER authx_cluster;
    GRANT USAGE ON FOREIGN SERVER authx_cluster TO authx_app;

    DROP SCHEMA IF EXISTS authx_cluster CASCADE;
    CREATE SCHEMA authx_cluster;
    GRANT USAGE ON SCHEMA authx_cluster TO authx_app;

    -- The same function on the node the route names.  (Wrappers name route
    -- helpers made further down: their bodies are checked when called.)
    PERFORM set_config('check_function_bodies', 'off', true);
    FOR r IN SELECT * FROM authx._cluster_routes() LOOP
        SELECT pg_get_function_arguments(r.fn), pg_get_function_result(r.fn),
               (SELECT string_agg(quote_ident(a), ', ' ORDER BY o)
                  FROM unnest(p.proargnames[1:p.pronargs]) WITH ORDINALITY x(a, o))
          INTO v_args, v_ret, v_names
          FROM pg_proc p WHERE p.oid = r.fn;
        v_call := format('%s(%s)', r.fn::regproc, v_names);
        IF r.route = 'ALL' THEN
            -- One row per node (PL/Proxy runs once per distinct node), then
            -- one answer: whether any node changed something.
            IF v_ret NOT IN ('void', 'boolean') THEN
                RAISE EXCEPTION 'authx: cannot broadcast %, which returns %', r.fn, v_ret;
            END IF;
            EXECUTE format($f$CREATE FUNCTION authx_cluster.%I(%s) RETURNS SETOF boolean LANGUAGE plproxy AS $p$
    CLUSTER 'authx_cluster';
    RUN ON ALL;
    SELECT %s;
$p$$f$, '_' || r.proxy || '_all', v_args, CASE v_ret WHEN 'void' THEN format('true FROM %s', v_call) ELSE v_call END);
            EXECUTE format($f$CREATE FUNCTION authx_cluster.%I(%s) RETURNS %s LANGUAGE sql
    SET search_path = pg_catalog, pg_temp AS $p$ SELECT %s FROM authx_cluster.%I(%s) x $p$$f$,
                r.proxy, v_args, v_ret, CASE v_ret WHEN 'void' THEN '' ELSE 'bool_or(x)' END,
                '_' || r.proxy || '_all', v_names);
            CONTINUE;
        END IF;
        IF r.route LIKE 'authx\_cluster.%' THEN
            -- The route itself asks the cluster, and PL/Proxy does not nest
            -- calls to one cluster: a proxy taking the bucket, and a wrapper
            -- that works it out first.
            EXECUTE format($f$CREATE FUNCTION authx_cluster.%I(bucket integer, %s) RETURNS %s LANGUAGE plproxy AS $p$
    CLUSTER 'authx_cluster';
    RUN ON bucket;
    SELECT * FROM %s;
$p$$f$, '_' || r.proxy || '_on', v_args, v_ret, v_call);
            EXECUTE format($f$CREATE FUNCTION authx_cluster.%I(%s) RETURNS %s LANGUAGE sql
    SET search_path = pg_catalog, pg_temp AS $p$ SELECT * FROM authx_cluster.%I(%s, %s) $p$$f$,
                r.proxy, v_args, v_ret, '_' || r.proxy || '_on', r.route, v_names);
            CONTINUE;
        END IF;
        EXECUTE format($f$CREATE FUNCTION authx_cluster.%I(%s) RETURNS %s LANGUAGE plproxy AS $p$
    CLUSTER 'authx_cluster';
    RUN ON %s;
    SELECT * FROM %s;
$p$$f$, r.proxy, v_args, v_ret, r.route, v_call);
        IF r.route = 'authx.shard_of(user_id)' AND r.proxy = (SELECT proname FROM pg_proc WHERE oid = r.fn) THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;

    -- Route helpers (made after the proxies they call): the node of an
    -- email's user (by the directory; an unknown email goes to its own
    -- bucket's node, which answers as for any unknown email: same work, same
    -- answer), and of an id's owner.
    CREATE FUNCTION authx_cluster._email_bucket(email text) RETURNS integer LANGUAGE sql
    SET search_path = pg_catalog, pg_temp AS $p$
        SELECT coalesce(authx.shard_of(authx_cluster._directory_lookup(_email_bucket.email)),
                        authx.shard_of_email(_email_bucket.email), 0)
    $p$;
    CREATE FUNCTION authx_cluster._owner_of(kind text, id uuid) RETURNS SETOF uuid LANGUAGE plproxy AS $p$
        CLUSTER 'authx_cluster'; RUN ON ALL;
        SELECT authx._owner_of(kind, id);
    $p$;
    CREATE FUNCTION authx_cluster._owner_bucket(kind text, id uuid) RETURNS integer LANGUAGE sql
    SET search_path = pg_catalog, pg_temp AS $p$
        SELECT coalesce(authx.shard_of((SELECT o FROM authx_cluster._owner_of(_owner_bucket.kind, _owner_bucket.id) o
                                         WHERE o IS NOT NULL LIMIT 1)), 0)
    $p$;

    CREATE FUNCTION authx_cluster._directory_unconfirmed() RETURNS TABLE (email text, user_id uuid)
    LANGUAGE plproxy AS $p$
        CLUSTER 'authx_cluster'; RUN ON ALL;
        SELECT * FROM authx._directory_unconfirmed(1000);
    $p$;
    -- Deleting an account frees its email, as on a single node.
    CREATE FUNCTION authx_cluster.user_delete(user_id uuid) RETURNS boolean LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $p$
    DECLARE
        v_email text := (SELECT g.email FROM authx_cluster.user_get(user_delete.user_id) g);
        v_done  boolean;
    BEGIN
        v_done := authx_cluster._user_delete_on(user_delete.user_id);
        IF v_done AND v_email IS NOT NULL THEN
            PERFORM authx_cluster._directory_release(v_email, user_delete.user_id);
        END IF;
        RETURN v_done;
    END
    $p$;
    -- Entries left by a sign-up cut short (the coordinator stopped between
    -- the claim and the account): released once a minute old, if their
    -- user does not exist; the others confirmed, and not looked at again.
    CREATE FUNCTION authx_cluster.directory_repair() RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $p$
    DECLARE
        r record;
        v_released integer := 0;
        v_confirmed integer := 0;
    BEGIN
        FOR r IN SELECT * FROM authx_cluster._directory_unconfirmed() LOOP
            IF authx_cluster._user_live(r.user_id) THEN
                PERFORM authx_cluster._directory_confirm(r.email, r.user_id);
                v_confirmed := v_confirmed + 1;
            ELSE
                PERFORM authx_cluster._directory_release(r.email, r.user_id);
                v_released := v_released + 1;
            END IF;
        END LOOP;
        RETURN jsonb_build_object('confirmed', v_confirmed, 'released', v_released);
    END
    $p$;
    CREATE FUNCTION authx_cluster._user_create_on(bucket integer, id uuid, email text, password text,
                                                  display_name text) RETURNS uuid LANGUAGE plproxy AS $p$
        CLUSTER 'authx_cluster'; RUN ON bucket;
        SELECT authx._user_create_id(id, email, password, display_name);
    $p$;
    -- Sign-up: claim the email in the directory first, then create the user
    -- on its node; give the email back if that fails.
    CREATE FUNCTION authx_cluster.user_create(email text, password text, display_name text DEFAULT NULL)
    RETURNS uuid LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $p$
    DECLARE
        v_id uuid := gen_random_uuid();
    BEGIN
        IF NOT authx_cluster._directory_claim(email, v_id) THEN
            RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = 'email is already registered',
                HINT = 'Sign in instead, or use another email address.';
        END IF;
        BEGIN
            RETURN authx_cluster._user_create_on(authx.shard_of(v_id), v_id, email, password, display_name);
        EXCEPTION WHEN OTHERS THEN
            PERFORM authx_cluster._directory_release(email, v_id);
            RAISE;
        END;
    END
    $p$;
    -- The whole cluster's signing keys, for apps that verify tokens alone.
    CREATE FUNCTION authx_cluster._jwks_all() RETURNS SETOF jsonb LANGUAGE plproxy AS $p$
        CLUSTER 'authx_cluster'; RUN ON ALL;
        SELECT authx.jwks();
    $p$;
    CREATE FUNCTION authx_cluster.jwks() RETURNS jsonb LANGUAGE sql
    SET search_path = pg_catalog, pg_temp AS $p$
        SELECT jsonb_build_object('keys', coalesce(jsonb_agg(DISTINCT k), '[]'))
          FROM authx_cluster._jwks_all() j, jsonb_array_elements(j -> 'keys') k
    $p$;
    -- Bucket moves and the cache map: one node, by its connection string.
    CREATE FUNCTION authx_cluster._quiesce_at(node text, bucket integer, timeout interval) RETURNS text
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._bucket_quiesce(bucket, timeout); $p$;
    CREATE FUNCTION authx_cluster._fence_at(node text, bucket integer, fenced boolean) RETURNS boolean
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._bucket_fence(bucket, fenced); $p$;
    CREATE FUNCTION authx_cluster._export_at(node text, bucket integer, token text) RETURNS jsonb
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._bucket_export(bucket, token); $p$;
    CREATE FUNCTION authx_cluster._import_at(node text, bucket integer, data jsonb) RETURNS jsonb
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._bucket_import(bucket, data); $p$;
    CREATE FUNCTION authx_cluster._purge_at(node text, bucket integer, token text) RETURNS jsonb
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._bucket_purge(bucket, token); $p$;
    CREATE FUNCTION authx_cluster._definitions_export_at(node text) RETURNS jsonb
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._definitions_export(); $p$;
    CREATE FUNCTION authx_cluster._definitions_import_at(node text, data jsonb) RETURNS jsonb
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._definitions_import(data); $p$;
    CREATE FUNCTION authx_cluster._key_fingerprint_at(node text) RETURNS text
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._key_fingerprint(); $p$;
    CREATE FUNCTION authx_cluster._cache_endpoint_at(node text) RETURNS text
    LANGUAGE plproxy AS $p$ CONNECT node; SELECT authx._cache_endpoint(); $p$;
    CREATE FUNCTION authx_cluster._cache_endpoint_on(bucket integer) RETURNS text
    LANGUAGE plproxy AS $p$ CLUSTER 'authx_cluster'; RUN ON bucket; SELECT authx._cache_endpoint(); $p$;

    -- Who may call a proxy is who may call its function on a node; the
    -- route helpers are lookups every caller needs; the by-connection-string
    -- functions (bucket moves) stay the superuser's.
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA authx_cluster FROM PUBLIC;
    GRANT USAGE ON SCHEMA authx_cluster TO authx_admin;
    FOR r IN SELECT * FROM authx._cluster_routes() LOOP
        FOR v_role IN SELECT unnest(ARRAY['authx_app', 'authx_admin']) LOOP
            CONTINUE WHEN NOT has_function_privilege(v_role, r.fn, 'EXECUTE');
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I',
                           (SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p
                             WHERE p.pronamespace = 'authx_cluster'::regnamespace
                               AND p.proname IN (r.proxy, '_' || r.proxy || '_all', '_' || r.proxy || '_on')), v_role);
        END LOOP;
    END LOOP;
    GRANT EXECUTE ON FUNCTION authx_cluster._email_bucket(text), authx_cluster._owner_of(text, uuid),
        authx_cluster._owner_bucket(text, uuid), authx_cluster._directory_lookup(text),
        authx_cluster._cache_endpoint_on(integer), authx_cluster.jwks(), authx_cluster._jwks_all()
        TO authx_app, authx_admin;
    GRANT EXECUTE ON FUNCTION authx_cluster.user_create(text, text, text), authx_cluster._directory_claim(text, uuid),
        authx_cluster._directory_release(text, uuid), authx_cluster._user_create_on(integer, uuid, text, text, text)
        TO authx_app;
    GRANT EXECUTE ON FUNCTION authx_cluster.user_delete(uuid), authx_cluster._user_delete_on(uuid),
        authx_cluster.user_get(uuid) TO authx_admin;
    RETURN jsonb_build_object('nodes', v_n, 'buckets', v_buckets, 'routed_by_user', v_count,
                              'buckets_per_node', (SELECT jsonb_agg(c ORDER BY node)
                                                     FROM (SELECT node, count(*) AS c FROM authx.shard_map GROUP BY node) x));
END
$setup$;

COMMENT ON FUNCTION authx.cluster_setup(text[]) IS
'Coordinator (superuser): records the data nodes, spreads the buckets over them in contiguous ranges (called again with the recorded nodes, keeps the map and remakes the rest; 55000 for other nodes), makes the PL/Proxy server authx_cluster (one partition per bucket) and the routing functions in schema authx_cluster: those taking a user id go to the user''s node, user_create claims the email in the directory first, login and user_find route by the directory. Raises 42501 for a non-superuser, 22023 for bad nodes.';

-- ----------------------------------------------------------------
-- Coordinator: adding nodes and moving buckets.
-- ----------------------------------------------------------------

-- A move past its switch whose source is not emptied yet (the map already
-- names the target; a move stopped before its switch leaves no row).
CREATE TABLE authx.bucket_moves (
    bucket     integer PRIMARY KEY,
    source     integer NOT NULL,
    target     integer NOT NULL,
    state      text NOT NULL CHECK (state = 'switched'),
    token      text,
    started_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE authx.bucket_moves IS
'Coordinator: bucket moves past their switch whose source still holds a copy. Call authx.bucket_move again for a bucket listed here to finish the move.';
SELECT pg_catalog.pg_extension_config_dump('authx.bucket_moves', '');

CREATE FUNCTION authx._cluster_superuser(what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('%s needs a superuser', what),
            HINT = 'It changes the PL/Proxy server and connects to nodes by their connection strings.';
    END IF;
    IF to_regprocedure('authx_cluster._quiesce_at(text,integer,interval)') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'this database is not a coordinator',
            HINT = 'Run authx.cluster_setup(nodes) first.';
    END IF;
END
$$;
COMMENT ON FUNCTION authx._cluster_superuser(text) IS
'Internal (scale-out). Raises 42501 unless the caller is a superuser, 55000 unless this is a coordinator.';

CREATE FUNCTION authx.cluster_add_node(conninfo text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_node integer;
BEGIN
    PERFORM authx._cluster_superuser('cluster_add_node');
    IF conninfo IS NULL OR btrim(conninfo) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'conninfo must be a connection string',
            HINT = 'Pass a libpq connection string, e.g. ''host=db4 dbname=app user=authx_proxy''.';
    END IF;
    SELECT n.node INTO v_node FROM authx.shard_nodes n WHERE n.conninfo = cluster_add_node.conninfo;
    IF FOUND THEN
        RETURN v_node;
    END IF;
    -- The new node starts with the cluster's definitions (those of node 0).
    PERFORM authx_cluster._definitions_import_at(cluster_add_node.conninfo,
        authx_cluster._definitions_export_at((SELECT n.conninfo FROM authx.shard_nodes n ORDER BY n.node LIMIT 1)));
    INSERT INTO authx.shard_nodes (node, conninfo)
    SELECT coalesce(max(n.node) + 1, 0), cluster_add_node.conninfo FROM authx.shard_nodes n
    RETURNING node INTO v_node;
    RETURN v_node;
END
$$;
COMMENT ON FUNCTION authx.cluster_add_node(text) IS
'Coordinator (superuser): records a data node (with authx installed), gives it the cluster-wide definitions it lacks (roles, permissions, rate-limit policies and overrides, threat rules, address blocks, settings: those of node 0), and returns its number; it holds no bucket until buckets move to it (authx.rebalance_plan, authx.bucket_move). The number of a node already recorded with that string is returned as is.';

-- The fewest moves that leave every node with buckets/nodes buckets (the
-- remainder going to the nodes holding most already).
CREATE FUNCTION authx.rebalance_plan()
RETURNS TABLE (bucket integer, source integer, target integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH counts AS (
        SELECT n.node, count(m.bucket)::integer AS held
          FROM authx.shard_nodes n LEFT JOIN authx.shard_map m ON m.node = n.node
         GROUP BY n.node),
    quota AS (
        SELECT c.node, c.held,
               t.total / t.nodes + CASE WHEN row_number() OVER (ORDER BY c.held DESC, c.node) <= t.total % t.nodes
                                        THEN 1 ELSE 0 END AS want
          FROM counts c, (SELECT sum(held)::integer AS total, count(*)::integer AS nodes FROM counts) t),
    surplus AS (
        SELECT x.bucket, x.node, row_number() OVER (ORDER BY x.node, x.bucket) AS k
          FROM (SELECT m.bucket, m.node, row_number() OVER (PARTITION BY m.node ORDER BY m.bucket DESC) AS r
                  FROM authx.shard_map m) x
          JOIN quota q ON q.node = x.node
         WHERE x.r <= q.held - q.want),
    slots AS (
        SELECT q.node, row_number() OVER (ORDER BY q.node, g) AS k
          FROM quota q, generate_series(1, q.want - q.held) g
         WHERE q.want > q.held)
    SELECT s.bucket, s.node, d.node FROM surplus s JOIN slots d USING (k) ORDER BY s.bucket
$$;
COMMENT ON FUNCTION authx.rebalance_plan() IS
'Coordinator: the bucket moves that even out the buckets over the recorded nodes, moving no more than needed (adding an n-th node to a balanced cluster moves about 1/n of the buckets). Carry them out with authx.bucket_move.';

CREATE PROCEDURE authx.bucket_move(bucket integer, target text, timeout interval DEFAULT '10 seconds')
LANGUAGE plpgsql
AS $$
DECLARE
    v_b        integer := bucket_move.bucket;
    v_mapped   integer;
    v_source   integer;
    v_target   integer;
    v_src      text;
    v_dst      text;
    v_token    text;
    v_data     jsonb;
    v_state    text;
    v_switch   timestamptz;
    v_db       oid;
    v_deadline timestamptz;
BEGIN
    -- A procedure that commits cannot pin search_path with SET: pin it for
    -- each of its transactions instead.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    PERFORM authx._cluster_superuser('bucket_move');
    IF v_b IS NULL OR target IS NULL OR timeout IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'bucket, target and timeout must not be NULL',
            HINT = 'Pass a bucket number and a node (its number, or a connection string).';
    END IF;
    SELECT m.node INTO v_mapped FROM authx.shard_map m WHERE m.bucket = v_b;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('bucket %s is not in the map', v_b),
            HINT = format('Buckets are numbered 0 to %s.', (SELECT max(m.bucket) FROM authx.shard_map m));
    END IF;
    IF target ~ '^[0-9]+$' THEN
        v_target := target::integer;
        IF NOT EXISTS (SELECT 1 FROM authx.shard_nodes n WHERE n.node = v_target) THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('there is no node %s', v_target),
                HINT = 'Add it with authx.cluster_add_node(conninfo), or pass its connection string.';
        END IF;
    ELSE
        v_target := authx.cluster_add_node(target);
    END IF;
    SELECT n.conninfo INTO v_dst FROM authx.shard_nodes n WHERE n.node = v_target;

    -- A move past its switch: the map names its target already, and
    -- bucket_moves its source.
    SELECT mv.state, mv.token, mv.source INTO v_state, v_token, v_source
      FROM authx.bucket_moves mv WHERE mv.bucket = v_b;
    IF v_state = 'switched' THEN
        IF v_target <> v_mapped THEN
            RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('bucket %s is half way to another node', v_b),
                HINT = 'Finish that move first: call bucket_move with the node the map names now.';
        END IF;
    ELSIF v_mapped = v_target THEN
        RETURN;
    ELSE
        v_source := v_mapped;
    END IF;
    SELECT n.conninfo INTO v_src FROM authx.shard_nodes n WHERE n.node = v_source;

    IF v_state IS DISTINCT FROM 'switched' THEN
        -- Sealed secrets (TOTP seeds, signing keys) and tagged refresh
        -- tokens move as they are: both nodes must hold the same key.
        IF authx_cluster._key_fingerprint_at(v_src) IS DISTINCT FROM authx_cluster._key_fingerprint_at(v_dst) THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = format('nodes %s and %s do not share the authx master key', v_source, v_target),
                HINT = 'Give every data node the same key: copy authx.key from the first node''s data directory, or point authx.key_file at one copy.';
        END IF;
        -- Fence the bucket on the source, copy it to the target.
        BEGIN
            v_token := authx_cluster._quiesce_at(v_src, v_b, timeout);
            v_data := authx_cluster._export_at(v_src, v_b, v_token);
            PERFORM authx_cluster._import_at(v_dst, v_b, v_data);
            -- A restart of the source in between dropped its fence: writes
            -- may have reached it since the copy.
            IF NOT authx_cluster._fence_at(v_src, v_b, NULL) THEN
                RAISE EXCEPTION USING ERRCODE = '55000',
                    MESSAGE = format('node %s lost the fence on bucket %s during the copy (a restart?)', v_source, v_b),
                    HINT = 'Nothing was switched: call bucket_move again.';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- The map still names the source: let it take writes again.
            BEGIN
                PERFORM authx_cluster._fence_at(v_src, v_b, false);
            EXCEPTION WHEN OTHERS THEN
                NULL;
            END;
            RAISE;
        END;
        -- Switch: new calls for the bucket reach the target.
        UPDATE authx.shard_map m SET node = v_target WHERE m.bucket = v_b;
        EXECUTE format('ALTER SERVER authx_cluster OPTIONS (SET %I %L)', 'p' || v_b, v_dst);
        INSERT INTO authx.bucket_moves AS mv (bucket, source, target, state, token)
        VALUES (v_b, v_source, v_target, 'switched', v_token)
        ON CONFLICT ON CONSTRAINT bucket_moves_pkey
        DO UPDATE SET source = excluded.source, target = excluded.target, state = excluded.state,
                      token = excluded.token, started_at = now();
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;

    -- Drain: calls that began before the switch may still read the source.
    v_switch := clock_timestamp();
    v_deadline := v_switch + timeout;
    v_db := (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                               WHERE a.datid = v_db AND a.pid <> pg_backend_pid()
                                 AND a.backend_type = 'client backend' AND a.xact_start < v_switch);
        IF clock_timestamp() > v_deadline THEN
            RAISE EXCEPTION USING ERRCODE = '55P03',
                MESSAGE = format('transactions older than bucket %s''s switch are still open on the coordinator', v_b),
                HINT = 'End them (pg_stat_activity), then call bucket_move again: it finishes the move.';
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
    PERFORM authx_cluster._purge_at(v_src, v_b, v_token);
    DELETE FROM authx.bucket_moves mv WHERE mv.bucket = v_b;
    COMMIT;
END
$$;
COMMENT ON PROCEDURE authx.bucket_move(integer, text, interval) IS
'Coordinator (superuser; CALL outside a transaction block): moves a bucket''s rows to the target node (its number, or a connection string: a new node is added). The source refuses writes to the bucket (40001, retry) while its rows are copied; the map then names the target; once no call begun before the switch remains, the source''s copy is deleted. Reads never fail. Raises 55P03 after timeout (waiting for the source''s writers, or for old transactions on the coordinator: call again to finish).';

CREATE FUNCTION authx.cache_map()
RETURNS TABLE (bucket integer, node integer, redis text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._cluster_superuser('cache_map');
    RETURN QUERY
    SELECT m.bucket, m.node, e.redis
      FROM authx.shard_map m
      JOIN (SELECT n.node, authx_cluster._cache_endpoint_at(n.conninfo) AS redis FROM authx.shard_nodes n) e
        ON e.node = m.node
     ORDER BY m.bucket;
END
$$;
COMMENT ON FUNCTION authx.cache_map() IS
'Coordinator (superuser): the Redis (URL without credentials) that caches each bucket''s sessions and keys, for gateways to load; it changes only when buckets move.';
