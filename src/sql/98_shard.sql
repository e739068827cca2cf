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

-- What a coordinator routes by an argument: the function called on the
-- node, the name of the proxy in schema authx_cluster, the PL/Proxy RUN ON
-- expression.  Functions taking a user id go to the user's node under
-- their own name; the directory to the email's node; session tokens to the
-- bucket they end in (bucket 0's node, which knows no such token, when
-- they name none).
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
                   ('authx.session_revoke(text)', 'session_revoke', 'coalesce(authx.token_bucket(token), 0)')
           ) r(f, proxy, route)
$$;
COMMENT ON FUNCTION authx._cluster_routes() IS
'Internal (scale-out). The functions a coordinator routes by an argument, with the proxy''s name and the RUN ON expression: those taking a user id to the user''s node, the directory to the email''s, session tokens to the bucket they end in.';

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
    v_ret     text;
    v_count   integer := 0;
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

    DELETE FROM authx.shard_map;
    DELETE FROM authx.shard_nodes;
    INSERT INTO authx.shard_nodes (node, conninfo)
    SELECT o - 1, c FROM unnest(cluster_setup.nodes) WITH ORDINALITY u(c, o);
    -- Contiguous ranges: bucket b on node floor(b * n / buckets).
    INSERT INTO authx.shard_map (bucket, node)
    SELECT b, (b::bigint * v_n / v_buckets)::integer FROM generate_series(0, v_buckets - 1) b;

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

    -- Routed by an argument: the same function on the node it names.
    FOR r IN SELECT * FROM authx._cluster_routes() LOOP
        SELECT pg_get_function_arguments(r.fn), pg_get_function_result(r.fn),
               format('%s(%s)', r.fn::regproc,
                      (SELECT string_agg(quote_ident(a), ', ' ORDER BY o)
                         FROM unnest(p.proargnames[1:p.pronargs]) WITH ORDINALITY x(a, o)))
          INTO v_args, v_ret, v_call
          FROM pg_proc p WHERE p.oid = r.fn;
        EXECUTE format($f$CREATE FUNCTION authx_cluster.%I(%s) RETURNS %s LANGUAGE plproxy AS $p$
    CLUSTER 'authx_cluster';
    RUN ON %s;
    SELECT * FROM %s;
$p$$f$, r.proxy, v_args, v_ret, r.route, v_call);
        IF r.route = 'authx.shard_of(user_id)' AND r.proxy = (SELECT proname FROM pg_proc WHERE oid = r.fn) THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;

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
    CREATE FUNCTION authx_cluster._login_on(bucket integer, email text, password text, ip inet, user_agent text,
                                            device_token text)
    RETURNS TABLE (status text, user_id uuid, session_token text, expires_at timestamptz)
    LANGUAGE plproxy AS $p$
        CLUSTER 'authx_cluster'; RUN ON bucket;
        SELECT * FROM authx.login(email, password, ip, user_agent, device_token);
    $p$;
    CREATE FUNCTION authx_cluster._user_find_on(bucket integer, email text) RETURNS uuid LANGUAGE plproxy AS $p$
        CLUSTER 'authx_cluster'; RUN ON bucket;
        SELECT authx.user_find(email);
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
    -- Login and lookups by email: to the node of the user the directory
    -- names; an unknown email goes to the node of its bucket, which answers
    -- as for any unknown email (same work, same answer).
    CREATE FUNCTION authx_cluster.login(email text, password text, ip inet DEFAULT NULL, user_agent text DEFAULT NULL,
                                        device_token text DEFAULT NULL)
    RETURNS TABLE (status text, user_id uuid, session_token text, expires_at timestamptz)
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $p$
        SELECT * FROM authx_cluster._login_on(
            coalesce(authx.shard_of(authx_cluster._directory_lookup(login.email)), authx.shard_of_email(login.email)),
            login.email, login.password, login.ip, login.user_agent, login.device_token)
    $p$;
    CREATE FUNCTION authx_cluster.user_find(email text) RETURNS uuid LANGUAGE sql
    SET search_path = pg_catalog, pg_temp AS $p$
        SELECT authx_cluster._user_find_on(
            coalesce(authx.shard_of(authx_cluster._directory_lookup(user_find.email)),
                     authx.shard_of_email(user_find.email)), user_find.email)
    $p$;

    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA authx_cluster TO authx_app;
    RETURN jsonb_build_object('nodes', v_n, 'buckets', v_buckets, 'routed_by_user', v_count,
                              'buckets_per_node', (SELECT jsonb_agg(c ORDER BY node)
                                                     FROM (SELECT node, count(*) AS c FROM authx.shard_map GROUP BY node) x));
END
$setup$;

COMMENT ON FUNCTION authx.cluster_setup(text[]) IS
'Coordinator (superuser): records the data nodes, spreads the buckets over them in contiguous ranges, makes the PL/Proxy server authx_cluster (one partition per bucket) and the routing functions in schema authx_cluster: those taking a user id go to the user''s node, user_create claims the email in the directory first, login and user_find route by the directory. Raises 42501 for a non-superuser, 22023 for bad nodes.';
