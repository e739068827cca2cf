-- 01_schema.sql — the shape of the authx extension, so that any drift is caught.
--
-- Covers:
--   * the exact list of extension member objects (functions with their
--     signatures, tables, views, the type, the sequence) from pg_depend;
--   * functions_are / views_are / types_are / sequences_are on schema authx,
--     so no stray object lives next to the extension's;
--   * columns of authx.users, authx.audit_log and the authx.stats view;
--   * the severity enum labels and their order; the partial unique email
--     index; audit_log range-partitioned on "at" with a DEFAULT partition;
--   * pg_extension_config_dump registrations (what pg_dump keeps);
--   * every function has a COMMENT;
--   * exactly the expected functions are SECURITY DEFINER, and each pins
--     search_path to exactly "pg_catalog, pg_temp";
--   * no function is executable by PUBLIC (proacl inspected), PUBLIC has no
--     privilege on schema, tables, views or sequence; the per-role EXECUTE
--     grants are exactly the documented ones;
--   * roles authx_app and authx_admin exist, admin is a member of app.
BEGIN;
SELECT plan(33);

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
        'function authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
        'function authx._password_check(text,text)',
        'function authx._password_hash(text,boolean)',
        'function authx._require(anyelement,text)',
        'function authx._stats()',
        'function authx._user_lock(uuid)',
        'function authx._user_set_status(uuid,text,text)',
        'function authx.audit(text,text,uuid,inet,jsonb,text)',
        'function authx.audit_flush(interval)',
        'function authx.maintenance_run(timestamp with time zone)',
        'function authx.password_set(uuid,text)',
        'function authx.password_verify(uuid,text)',
        'function authx.user_create(text,text,text)',
        'function authx.user_delete(uuid)',
        'function authx.user_disable(uuid)',
        'function authx.user_enable(uuid)',
        'function authx.user_find(text)',
        'function authx.user_get(uuid)',
        'sequence authx.audit_log_id_seq',
        'table authx.audit_log',
        'table authx.audit_log_default',
        'table authx.users',
        'type authx.severity',
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
    '_audit_tx', '_email_normalize', '_partitions_maintain', '_password_check',
    '_password_hash', '_require', '_stats', '_user_lock', '_user_set_status',
    'audit', 'audit_flush', 'maintenance_run', 'password_set', 'password_verify',
    'user_create', 'user_delete', 'user_disable', 'user_enable', 'user_find', 'user_get'
], 'schema authx has exactly the extension functions');

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

SELECT views_are('authx', ARRAY['audit_partitions', 'stats'], 'schema authx has exactly the views audit_partitions, stats');
SELECT types_are('authx', ARRAY['severity'], 'schema authx has exactly the type severity');
SELECT sequences_are('authx', ARRAY['audit_log_id_seq'], 'schema authx has exactly the sequence audit_log_id_seq');

-- Tables: the worker adds audit_log_pYYYYMMDD partitions at run time, which
-- are not members; every other table must be one of the three members.
SELECT is_empty(
    $$SELECT c.relname::text FROM pg_catalog.pg_class c
       WHERE c.relnamespace = 'authx'::regnamespace AND c.relkind IN ('r', 'p')
         AND c.relname NOT IN ('users', 'audit_log', 'audit_log_default')
         AND c.relname !~ '^audit_log_p[0-9]{8}$'$$,
    'schema authx has no tables but users, audit_log, audit_log_default and daily partitions'
);

-- ---------------------------------------------------------------- shapes
SELECT columns_are('authx', 'users', ARRAY[
    'id', 'email', 'display_name', 'password_hash', 'status', 'failed_logins',
    'locked_until', 'mfa_enabled', 'email_verified_at', 'created_at', 'updated_at',
    'password_changed_at', 'last_login_at', 'deleted_at'
], 'authx.users columns');
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

SELECT is_partitioned('authx', 'audit_log', 'audit_log is partitioned');
SELECT is(pg_catalog.pg_get_partkeydef('authx.audit_log'::regclass), 'RANGE (at)', 'audit_log is range-partitioned on at');
SELECT is(
    (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c
      WHERE c.oid = 'authx.audit_log_default'::regclass),
    'DEFAULT', 'audit_log_default is the DEFAULT partition of audit_log');

SELECT set_eq(
    $$SELECT unnest(extconfig)::regclass::text FROM pg_catalog.pg_extension WHERE extname = 'authx'$$,
    ARRAY['authx.users', 'authx.audit_log_default', 'authx.audit_log_id_seq'],
    'pg_dump keeps users, audit_log_default and the id sequence (pg_extension_config_dump)'
);

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
        'authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
        'authx.audit(text,text,uuid,inet,jsonb,text)',
        'authx.maintenance_run(timestamp with time zone)',
        'authx.password_set(uuid,text)',
        'authx.password_verify(uuid,text)',
        'authx.user_create(text,text,text)',
        'authx.user_delete(uuid)',
        'authx.user_disable(uuid)',
        'authx.user_enable(uuid)',
        'authx.user_find(text)',
        'authx.user_get(uuid)'
    ],
    'exactly the expected functions are SECURITY DEFINER'
);

SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef
         AND p.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']$$,
    'every SECURITY DEFINER function has proconfig exactly {search_path=pg_catalog, pg_temp}'
);

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
             ('authx.user_disable(uuid)', 'authx_admin'),
             ('authx.user_enable(uuid)', 'authx_admin'),
             ('authx.user_delete(uuid)', 'authx_admin'),
             ('authx.audit_flush(interval)', 'authx_admin'),
             ('authx.maintenance_run(timestamp with time zone)', 'authx_admin'),
             ('authx._stats()', 'authx_admin')$$,
    'EXECUTE grants are exactly the documented ones'
);

-- Exactly the documented relation grants (owner excluded; column grants
-- are checked in 02_privileges).
SELECT set_eq(
    $$SELECT c.relname::text, a.grantee::regrole::text, a.privilege_type
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
       WHERE c.relnamespace = 'authx'::regnamespace AND a.grantee <> c.relowner$$,
    $$VALUES ('audit_log', 'authx_admin', 'SELECT'),
             ('audit_partitions', 'authx_admin', 'SELECT'),
             ('stats', 'authx_admin', 'SELECT')$$,
    'table-level grants are exactly SELECT on audit_log, audit_partitions, stats for authx_admin'
);

SELECT schema_privs_are('authx', 'authx_app', ARRAY['USAGE'], 'authx_app has only USAGE on schema authx');
SELECT schema_privs_are('authx', 'authx_admin', ARRAY['USAGE'], 'authx_admin has only USAGE on schema authx');

-- ---------------------------------------------------------------- roles
SELECT has_role('authx_app', 'role authx_app exists');
SELECT is_member_of('authx_app', ARRAY['authx_admin'], 'authx_admin is a member of authx_app');

SELECT * FROM finish();
ROLLBACK;
