-- 01_schema.sql — the shape of the authx extension, so that any drift is caught.
--
-- Covers:
--   * the exact list of extension member objects (functions with their
--     signatures, tables, views, the type, the sequence) from pg_depend;
--   * functions_are / views_are / types_are / sequences_are on schema authx,
--     so no stray object lives next to the extension's;
--   * columns of authx.users, audit_log, sessions, lockouts and the views
--     stats and active_lockouts; sessions.version is bigint NOT NULL
--     DEFAULT 1;
--   * the triggers on authx tables, exactly, with their full definitions
--     (users_status_revoke_sessions, sessions_version, sessions_cache);
--     their functions: _sessions_version PL/pgSQL, _sessions_cache C,
--     neither SECURITY DEFINER;
--   * cache_sync(timeout interval DEFAULT 30 s) RETURNS void and
--     cache_status() RETURNS jsonb: C, VOLATILE, PARALLEL RESTRICTED,
--     cache_sync STRICT, neither SECURITY DEFINER;
--   * the severity enum labels and their order; the partial unique email
--     index; audit_log range-partitioned on "at" with a DEFAULT partition;
--   * sessions: unique token_hash index under the name session_validate
--     (C) looks up, 32-byte hash check, FK to users ON DELETE CASCADE;
--     lockouts: one row per (user, ip) with NULL ip counted as a value;
--   * pg_extension_config_dump registrations (what pg_dump keeps);
--   * every function has a COMMENT;
--   * exactly the expected functions are SECURITY DEFINER, and each pins
--     search_path to exactly "pg_catalog, pg_temp" (only
--     _partitions_maintain adds lock_timeout = 1s); every SQL and PL/pgSQL
--     function pins search_path; session_validate (C) is not SECURITY
--     DEFINER;
--   * no function is executable by PUBLIC (proacl inspected), PUBLIC has no
--     privilege on schema, tables, views or sequence; the per-role EXECUTE
--     grants are exactly the documented ones;
--   * roles authx_app and authx_admin exist, admin is a member of app.
BEGIN;
SELECT plan(49);

-- ---------------------------------------------------------------- members
SELECT has_extension('authx', 'extension authx is installed');

SELECT set_eq(
    $$SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
       WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
         AND d.deptype = 'e' AND e.extname = 'authx'$$,
    ARRAY[
        'function authx._audit_tx(text,authx.severity,uuid,jsonb)',
        'function authx._email_normalize(text)',
        'function authx._lockout_clear(uuid,inet)',
        'function authx._lockout_fail(uuid,inet)',
        'function authx._lockout_state(uuid,inet)',
        'function authx._maintenance_run_at(timestamp with time zone)',
        'function authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
        'function authx._password_check(text,text)',
        'function authx._password_hash(text,boolean,text)',
        'function authx._password_rehash(uuid,text,text)',
        'function authx._require(anyelement,text)',
        'function authx._session_insert(uuid,inet,text,interval)',
        'function authx._session_token_hash(text)',
        'function authx._sessions_cache()',
        'function authx._sessions_purge(timestamp with time zone)',
        'function authx._sessions_version()',
        'function authx._setting_interval(text,interval)',
        'function authx._stats()',
        'function authx._token_new(text)',
        'function authx._user_lock(uuid)',
        'function authx._user_set_status(uuid,text,text)',
        'function authx._user_status_revoke()',
        'function authx.audit(text,text,uuid,inet,jsonb,text)',
        'function authx.audit_flush(interval)',
        'function authx.cache_status()',
        'function authx.cache_sync(interval)',
        'function authx.login(text,text,inet,text)',
        'function authx.maintenance_run()',
        'function authx.password_set(uuid,text)',
        'function authx.password_verify(uuid,text)',
        'function authx.session_create(uuid,inet,text,interval)',
        'function authx.session_info(text)',
        'function authx.session_revoke(text)',
        'function authx.session_revoke_all(uuid,text)',
        'function authx.session_revoke_id(uuid)',
        'function authx.session_validate(text,inet)',
        'function authx.sessions(uuid)',
        'function authx.user_create(text,text,text)',
        'function authx.user_delete(uuid)',
        'function authx.user_disable(uuid)',
        'function authx.user_enable(uuid)',
        'function authx.user_find(text)',
        'function authx.user_get(uuid)',
        'function authx.user_unlock(uuid)',
        'sequence authx.audit_log_id_seq',
        'table authx.audit_log',
        'table authx.audit_log_default',
        'table authx.lockouts',
        'table authx.sessions',
        'table authx.users',
        'type authx.severity',
        'view authx.active_lockouts',
        'view authx.audit_partitions',
        'view authx.stats'
    ],
    'extension members (pg_depend) are exactly the documented objects'
);

-- Members can only live in schema authx (a member elsewhere would be drift).
SELECT is_empty(
    $$SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
       WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
         AND d.deptype = 'e' AND e.extname = 'authx'
         AND (pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema <> 'authx'$$,
    'every extension member is in schema authx'
);

SELECT functions_are('authx', ARRAY[
    '_audit_tx', '_email_normalize', '_lockout_clear', '_lockout_fail', '_lockout_state',
    '_maintenance_run_at', '_partitions_maintain', '_password_check', '_password_hash',
    '_password_rehash', '_require', '_session_insert', '_session_token_hash', '_sessions_cache',
    '_sessions_purge', '_sessions_version',
    '_setting_interval', '_stats', '_token_new', '_user_lock', '_user_set_status', '_user_status_revoke',
    'audit', 'audit_flush', 'cache_status', 'cache_sync', 'login', 'maintenance_run', 'password_set', 'password_verify',
    'session_create', 'session_info', 'session_revoke', 'session_revoke_all', 'session_revoke_id',
    'session_validate', 'sessions',
    'user_create', 'user_delete', 'user_disable', 'user_enable', 'user_find', 'user_get', 'user_unlock'
], 'schema authx has exactly the extension functions');

-- One signature per name: an overload (say maintenance_run(timestamptz)
-- coming back) would be drift even if the names match.
SELECT is((SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = 'authx'::regnamespace)::int, 44,
          'schema authx has exactly 44 functions (no overloads)');

-- Every function in the schema is an extension member (no overload added
-- outside the install script).
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                            AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e')$$,
    'every function in schema authx belongs to the extension'
);

SELECT views_are('authx', ARRAY['active_lockouts', 'audit_partitions', 'stats'],
                 'schema authx has exactly the views active_lockouts, audit_partitions, stats');
SELECT types_are('authx', ARRAY['severity'], 'schema authx has exactly the type severity');
SELECT sequences_are('authx', ARRAY['audit_log_id_seq'], 'schema authx has exactly the sequence audit_log_id_seq');

-- Tables: the worker adds audit_log_pYYYYMMDD partitions at run time, which
-- are not members; every other table must be one of the five members.
SELECT is_empty(
    $$SELECT c.relname::text FROM pg_catalog.pg_class c
       WHERE c.relnamespace = 'authx'::regnamespace AND c.relkind IN ('r', 'p', 'f', 'm')
         AND c.relname NOT IN ('users', 'audit_log', 'audit_log_default', 'sessions', 'lockouts')
         AND c.relname !~ '^audit_log_p[0-9]{8}$'$$,
    'schema authx has no tables but users, audit_log, audit_log_default, sessions, lockouts and daily partitions'
);

-- ---------------------------------------------------------------- shapes
SELECT columns_are('authx', 'users', ARRAY[
    'id', 'email', 'display_name', 'password_hash', 'status', 'mfa_enabled',
    'email_verified_at', 'created_at', 'updated_at', 'password_changed_at',
    'last_login_at', 'deleted_at'
], 'authx.users columns (lockout state lives in authx.lockouts)');
SELECT columns_are('authx', 'sessions', ARRAY[
    'id', 'token_hash', 'user_id', 'created_at', 'expires_at', 'idle_timeout',
    'last_seen_at', 'ip', 'user_agent', 'last_ip', 'revoked_at', 'revoke_reason', 'version'
], 'authx.sessions columns (no token column)');
-- The Redis script orders a key's writes by it: NULL or another type would
-- break the comparison, a default other than 1 the first entry's version.
SELECT is((SELECT ROW(pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_catalog.pg_get_expr(d.adbin, d.adrelid))::text
             FROM pg_catalog.pg_attribute a
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = 'authx.sessions'::regclass AND a.attname = 'version' AND NOT a.attisdropped),
          '(bigint,t,1)', 'sessions.version is bigint NOT NULL DEFAULT 1');
SELECT columns_are('authx', 'lockouts', ARRAY[
    'user_id', 'ip', 'failures', 'lock_count', 'window_start', 'locked_until', 'updated_at'
], 'authx.lockouts columns');
SELECT columns_are('authx', 'active_lockouts', ARRAY[
    'user_id', 'ip', 'locked_until', 'lock_count', 'failures', 'updated_at'
], 'authx.active_lockouts columns');
SELECT columns_are('authx', 'audit_log', ARRAY[
    'id', 'at', 'event_type', 'severity', 'user_id', 'ip', 'user_agent', 'details'
], 'authx.audit_log columns');
SELECT columns_are('authx', 'stats', ARRAY['name', 'value', 'kind'], 'authx.stats columns');
SELECT col_type_is('authx', 'audit_log', 'severity', 'authx.severity', 'audit_log.severity is authx.severity');

SELECT enum_has_labels('authx', 'severity', ARRAY['info', 'low', 'medium', 'high', 'critical'],
                       'severity labels in ascending order');

SELECT is(pg_catalog.pg_get_indexdef('authx.users_email_key'::regclass),
          'CREATE UNIQUE INDEX users_email_key ON authx.users USING btree (lower(email)) WHERE (deleted_at IS NULL)',
          'email is unique case-insensitively among live users only');

-- session_validate (C) finds these by name: renaming one breaks it.
SELECT is(pg_catalog.pg_get_indexdef('authx.sessions_token_hash_key'::regclass),
          'CREATE UNIQUE INDEX sessions_token_hash_key ON authx.sessions USING btree (token_hash)',
          'sessions_token_hash_key is the unique index on token_hash');
SELECT is(pg_catalog.pg_get_indexdef('authx.users_pkey'::regclass),
          'CREATE UNIQUE INDEX users_pkey ON authx.users USING btree (id)',
          'users_pkey is the primary key index on users.id');
SELECT col_type_is('authx', 'sessions', 'token_hash', 'bytea', 'sessions.token_hash is bytea');
SELECT results_eq(
    $$SELECT pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'authx.sessions'::regclass AND c.contype IN ('f', 'c') ORDER BY 1$$,
    $$VALUES ('CHECK ((idle_timeout >= 0))'), ('CHECK ((octet_length(token_hash) = 32))'),
             ('FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE')$$,
    'sessions: 32-byte hash, idle_timeout >= 0, user_id references users ON DELETE CASCADE');
SELECT is(pg_catalog.pg_get_indexdef('authx.lockouts_key'::regclass),
          'CREATE UNIQUE INDEX lockouts_key ON authx.lockouts USING btree (user_id, ip) NULLS NOT DISTINCT',
          'lockouts: one row per (user_id, ip), the account row (ip NULL) included');

SELECT is_partitioned('authx', 'audit_log', 'audit_log is partitioned');
SELECT is(pg_catalog.pg_get_partkeydef('authx.audit_log'::regclass), 'RANGE (at)', 'audit_log is range-partitioned on at');
SELECT is(
    (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c
      WHERE c.oid = 'authx.audit_log_default'::regclass),
    'DEFAULT', 'audit_log_default is the DEFAULT partition of audit_log');

SELECT set_eq(
    $$SELECT unnest(extconfig)::regclass::text FROM pg_catalog.pg_extension WHERE extname = 'authx'$$,
    ARRAY['authx.users', 'authx.audit_log_default', 'authx.audit_log_id_seq', 'authx.sessions', 'authx.lockouts'],
    'pg_dump keeps users, audit_log_default, the id sequence, sessions and lockouts (pg_extension_config_dump)'
);

-- ---------------------------------------------------------------- triggers
-- Every user trigger on a table of schema authx, with its whole definition
-- (timing, events, columns, WHEN, level, function).  Partitions inherit no
-- triggers here; an extra or changed trigger is drift.
SELECT set_eq(
    $$SELECT t.tgrelid::regclass::text, t.tgname::text, pg_catalog.pg_get_triggerdef(t.oid)
        FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace = 'authx'::regnamespace AND NOT t.tgisinternal$$,
    $$VALUES ('authx.users', 'users_status_revoke_sessions',
              'CREATE TRIGGER users_status_revoke_sessions AFTER UPDATE OF status ON authx.users FOR EACH ROW '
              'WHEN (((new.status = ANY (ARRAY[''disabled''::text, ''deleted''::text])) '
              'AND (old.status IS DISTINCT FROM new.status))) EXECUTE FUNCTION authx._user_status_revoke()'),
             ('authx.sessions', 'sessions_version',
              'CREATE TRIGGER sessions_version BEFORE UPDATE ON authx.sessions FOR EACH ROW '
              'EXECUTE FUNCTION authx._sessions_version()'),
             ('authx.sessions', 'sessions_cache',
              'CREATE TRIGGER sessions_cache AFTER INSERT OR DELETE OR UPDATE ON authx.sessions FOR EACH ROW '
              'EXECUTE FUNCTION authx._sessions_cache()')$$,
    'triggers on authx tables are exactly users_status_revoke_sessions, sessions_version, sessions_cache'
);
-- Enabled (origin and local), so they fire in every session.
SELECT is_empty(
    $$SELECT t.tgname::text FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace = 'authx'::regnamespace AND NOT t.tgisinternal AND t.tgenabled <> 'O'$$,
    'every authx trigger is enabled'
);

-- Trigger and cache functions: language, SECURITY DEFINER, volatility,
-- parallel safety, strictness, result type.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.oid IN ('authx._sessions_version()'::regprocedure, 'authx._sessions_cache()'::regprocedure,
                       'authx.cache_sync(interval)'::regprocedure, 'authx.cache_status()'::regprocedure)$$,
    $$VALUES ('authx._sessions_version()', 'plpgsql', false, 'v', 'u', false, 'trigger'),
             ('authx._sessions_cache()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx.cache_sync(interval)', 'c', false, 'v', 'r', true, 'void'),
             ('authx.cache_status()', 'c', false, 'v', 'r', false, 'jsonb')$$,
    'cache functions: _sessions_version plpgsql, _sessions_cache C, cache_sync STRICT void, '
    'cache_status jsonb; none SECURITY DEFINER'
);
SELECT is(pg_catalog.pg_get_function_arguments('authx.cache_sync(interval)'::regprocedure),
          'timeout interval DEFAULT ''00:00:30''::interval',
          'cache_sync(timeout interval DEFAULT ''30 seconds'')');

-- ---------------------------------------------------------------- comments
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') = ''$$,
    'every authx function has a COMMENT'
);

-- ---------------------------------------------------------------- SECURITY DEFINER
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef$$,
    ARRAY[
        'authx._audit_tx(text,authx.severity,uuid,jsonb)',
        'authx._maintenance_run_at(timestamp with time zone)',
        'authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
        'authx.audit(text,text,uuid,inet,jsonb,text)',
        'authx.login(text,text,inet,text)',
        'authx.maintenance_run()',
        'authx.password_set(uuid,text)',
        'authx.password_verify(uuid,text)',
        'authx.session_create(uuid,inet,text,interval)',
        'authx.session_info(text)',
        'authx.session_revoke(text)',
        'authx.session_revoke_all(uuid,text)',
        'authx.session_revoke_id(uuid)',
        'authx.sessions(uuid)',
        'authx.user_create(text,text,text)',
        'authx.user_delete(uuid)',
        'authx.user_disable(uuid)',
        'authx.user_enable(uuid)',
        'authx.user_find(text)',
        'authx.user_get(uuid)',
        'authx.user_unlock(uuid)'
    ],
    'exactly the expected functions are SECURITY DEFINER'
);

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, p.proconfig FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef
         AND p.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']$$,
    $$VALUES ('authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
              ARRAY['search_path=pg_catalog, pg_temp', 'lock_timeout=1s'])$$,
    'every SECURITY DEFINER function has proconfig exactly {search_path=pg_catalog, pg_temp}, '
    '_partitions_maintain adds lock_timeout=1s'
);

-- Not only SECURITY DEFINER ones: an internal SQL function called from a
-- definer inherits the caller's search_path unless it pins its own.
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
         AND NOT coalesce(p.proconfig[1] = 'search_path=pg_catalog, pg_temp', false)$$,
    'every SQL and PL/pgSQL function pins search_path = pg_catalog, pg_temp'
);

-- session_validate is the hot path: C, reading the tables itself, not a
-- definer (its one write runs as the table owner inside the C code).
SELECT is((SELECT ROW(l.lanname, p.prosecdef, p.provolatile)::text FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'authx.session_validate(text,inet)'::regprocedure),
          '(c,f,v)', 'session_validate is a VOLATILE C function, not SECURITY DEFINER');

-- Functions are owned by a superuser (what SECURITY DEFINER runs as).
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef AND NOT r.rolsuper$$,
    'SECURITY DEFINER functions are owned by a superuser'
);

-- ---------------------------------------------------------------- PUBLIC
-- A NULL proacl means the default, which includes EXECUTE for PUBLIC.
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND (p.proacl IS NULL
              OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
                          WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))$$,
    'no authx function is executable by PUBLIC (proacl has no =X entry and is not NULL)'
);

SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')$$,
    'has_function_privilege(public, ..., EXECUTE) is false for every authx function'
);

SELECT ok(NOT pg_catalog.has_schema_privilege('public', 'authx', 'USAGE')
          AND NOT pg_catalog.has_schema_privilege('public', 'authx', 'CREATE'),
          'PUBLIC has neither USAGE nor CREATE on schema authx');

SELECT is_empty(
    $$SELECT c.relname::text FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
       WHERE c.relnamespace = 'authx'::regnamespace AND a.grantee = 0$$,
    'PUBLIC has no privilege on any authx table, view or sequence'
);

-- Exactly the documented EXECUTE grants (owner excluded).
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, a.grantee::regrole::text
        FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
       WHERE p.pronamespace = 'authx'::regnamespace AND a.grantee <> p.proowner$$,
    $$VALUES ('authx.user_create(text,text,text)', 'authx_app'),
             ('authx.user_get(uuid)', 'authx_app'),
             ('authx.user_find(text)', 'authx_app'),
             ('authx.password_verify(uuid,text)', 'authx_app'),
             ('authx.password_set(uuid,text)', 'authx_app'),
             ('authx.audit(text,text,uuid,inet,jsonb,text)', 'authx_app'),
             ('authx.login(text,text,inet,text)', 'authx_app'),
             ('authx.session_create(uuid,inet,text,interval)', 'authx_app'),
             ('authx.session_validate(text,inet)', 'authx_app'),
             ('authx.session_info(text)', 'authx_app'),
             ('authx.sessions(uuid)', 'authx_app'),
             ('authx.session_revoke(text)', 'authx_app'),
             ('authx.session_revoke_id(uuid)', 'authx_app'),
             ('authx.session_revoke_all(uuid,text)', 'authx_app'),
             ('authx.user_disable(uuid)', 'authx_admin'),
             ('authx.user_enable(uuid)', 'authx_admin'),
             ('authx.user_delete(uuid)', 'authx_admin'),
             ('authx.audit_flush(interval)', 'authx_admin'),
             ('authx.maintenance_run()', 'authx_admin'),
             ('authx.user_unlock(uuid)', 'authx_admin'),
             ('authx.cache_sync(interval)', 'authx_admin'),
             ('authx.cache_status()', 'authx_admin'),
             ('authx._stats()', 'authx_admin')$$,
    'EXECUTE grants are exactly the documented ones'
);

-- Exactly the documented relation grants (owner excluded; column grants
-- are checked in 02_privileges).
SELECT set_eq(
    $$SELECT c.relname::text, a.grantee::regrole::text, a.privilege_type
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
       WHERE c.relnamespace = 'authx'::regnamespace AND a.grantee <> c.relowner$$,
    $$VALUES ('active_lockouts', 'authx_admin', 'SELECT'),
             ('audit_log', 'authx_admin', 'SELECT'),
             ('audit_partitions', 'authx_admin', 'SELECT'),
             ('stats', 'authx_admin', 'SELECT')$$,
    'table-level grants are exactly SELECT on active_lockouts, audit_log, audit_partitions, stats for authx_admin'
);

SELECT schema_privs_are('authx', 'authx_app', ARRAY['USAGE'], 'authx_app has only USAGE on schema authx');
SELECT schema_privs_are('authx', 'authx_admin', ARRAY['USAGE'], 'authx_admin has only USAGE on schema authx');

-- ---------------------------------------------------------------- roles
SELECT has_role('authx_app', 'role authx_app exists');
SELECT is_member_of('authx_app', ARRAY['authx_admin'], 'authx_admin is a member of authx_app');

SELECT * FROM finish();
ROLLBACK;
