-- 11_rbac.sql — roles and permissions, end to end.
--
-- Covers:
--   * the seeds: guest < user < manager < admin, marked seeded; admin holds
--     *:* (the only seeded permission), the others nothing; a user granted
--     admin inherits the whole chain and holds everything;
--   * role_create: names up to 63 characters of a-z 0-9 _ . -, bad names
--     22023 (each named), duplicates 42710 (a seed too), unknown parent
--     42704, NULL 22004; the description is cut at 1000 characters;
--   * role_grant / role_revoke: true when they change something, false
--     otherwise; wildcards are not expanded on revoke; the valid forms
--     (docs:*, *:*, *:read, projects/42:read, a.b-c_d/e:f.g-h_i, parts of
--     100 characters) and malformed ones, refused with 22023 naming them
--     ('Docs:read', 'docs', 'docs:', ':read', 'a:b:c', 'docs:read ',
--     '*x:read', 'docs:*x', '/docs:read', 'docs:re/ad', '', parts of 101
--     characters); unknown role 42704, NULL role 22004;
--   * user_grant: granting again replaces the expiry (both ways), past
--     expiry 22023, unknown and deleted users P0002, unknown role 42704,
--     NULLs 22004; user_revoke true / false, also for an unknown user;
--   * has_permission: direct, inherited through four levels (never
--     downwards), resource:*, *:* and *:action grants; a wanted docs:* is
--     only satisfied by docs:* or *:*, never by docs:read + docs:write; no
--     resource hierarchy (projects:* does not cover projects/42:read);
--     malformed wanted permissions 22023; unknown user false, NULLs NULL;
--     disabled and deleted users false, enabled again true, locked true;
--   * the per-backend cache, made deterministic by a second connection
--     (dblink) holding back the maintenance worker, whose purge of expired
--     grants would invalidate every cache at any time: the first call after
--     a change is a miss and a second identical call a hit (authx.stats
--     rbac_cache_hits / rbac_cache_misses), another permission of the same
--     user is a hit too; a grant with expires_at = now + 2 s counts before
--     and stops counting right after its expiry although the answer was
--     cached (a miss, no invalidation needed); changes made by another
--     backend count at this backend's next call; a revocation committed by
--     another backend while this backend's REPEATABLE READ transaction, or
--     one of its READ COMMITTED statements, runs counts once that ends; a
--     maintenance pass that deleted no grant leaves the caches alone;
--   * transactions: a grant, a role_grant and a user_disable made in this
--     transaction count in it at once, even after a cached answer; a
--     rolled-back grant (also to a savepoint) never counts; a role_grant on
--     the top role counts at once for a user four levels below; a
--     transaction that changed RBAC cannot be prepared (0A000, rolled back);
--   * user_permissions: sorted, each once, inherited, empty for unknown,
--     disabled and deleted users; user_roles: direct grants with
--     inherited_from NULL, ancestors with the granted role and its expiry,
--     expired grants absent, a role held through two grants listed once
--     with the longest-lived one;
--   * role_set_parent: a self-parent, a two-level and a four-level cycle
--     (also guest -> admin through the seeds) refused with 22023 "cannot
--     inherit ... would make a cycle", the hierarchy unchanged after; NULL
--     detaches (and the permissions follow); unknown role or parent 42704;
--   * role_drop: 2BP01 while a child inherits; takes the role's
--     permissions and user grants with it; 42704 unknown, 22004 NULL;
--   * role_list: parent, own permissions sorted, number of live holders;
--   * audit events role.created / role.permission_granted /
--     role.permission_revoked / role.parent_changed / user.role_granted /
--     user.role_revoked / role.dropped with their severities and details,
--     none for calls that changed nothing or were rolled back;
--   * maintenance_run deletes expired grants and keeps live ones ('roles'
--     -> grants_expired);
--   * privileges: authx_app calls has_permission, user_permissions and
--     user_roles, but no management function, internal function or RBAC
--     table (42501); authx_admin manages roles and grants and reads the
--     tables, but cannot write them directly.
-- The permission cache only serves committed state, so this file commits;
-- what it makes (roles tap11*, users pgtap-rbac-*@example.com, schema
-- tap11 with dblink when it was missing) is removed at the end.
SELECT plan(255);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
-- A mistake while the worker is held back fails instead of waiting forever
-- (here and, through options, in the two other connections).
SET lock_timeout = '30s';

CREATE SCHEMA tap11;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        CREATE EXTENSION dblink SCHEMA tap11;
    END IF;
END
$$;
SET search_path = public, tap11;

SELECT format('host=127.0.0.1 port=%s dbname=%s user=%s options=-clock_timeout=30s', current_setting('port'),
              current_database(), current_user) AS cs \gset
SELECT dblink_connect('tap11_lock', :'cs') AS lock_conn, dblink_connect('tap11_w', :'cs') AS writer_conn \gset

-- Another backend runs an authx call and commits.
CREATE FUNCTION pg_temp.remote(p_call text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tap11_w', format('DO %L', 'BEGIN PERFORM ' || p_call || '; END'));
END
$$;
-- Hold back the maintenance worker: its purge (DELETE on user_roles) waits
-- for this lock, so nothing but this file moves the cache generation.  While
-- held, nothing here may write authx.user_roles.
CREATE FUNCTION pg_temp.hold_worker() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tap11_lock', 'BEGIN');
    PERFORM dblink_exec('tap11_lock', 'LOCK TABLE authx.user_roles IN SHARE MODE');
END
$$;
CREATE FUNCTION pg_temp.release_worker() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tap11_lock', 'COMMIT');
END
$$;
-- Cache counters since the last mark: {hits, misses}.
CREATE TEMP TABLE tap11_stats (name text PRIMARY KEY, value bigint);
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
    DELETE FROM tap11_stats;
    INSERT INTO tap11_stats SELECT name, value FROM authx.stats WHERE name IN ('rbac_cache_hits', 'rbac_cache_misses');
$$;
CREATE FUNCTION pg_temp.delta() RETURNS bigint[] LANGUAGE sql AS $$
    SELECT ARRAY[(SELECT s.value - m.value FROM authx.stats s JOIN tap11_stats m USING (name) WHERE name = 'rbac_cache_hits'),
                 (SELECT s.value - m.value FROM authx.stats s JOIN tap11_stats m USING (name) WHERE name = 'rbac_cache_misses')];
$$;
-- Leave the user with exactly this role (or none).
CREATE FUNCTION pg_temp.grant_only(p_user uuid, p_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM authx.user_revoke(p_user, ur.role) FROM authx.user_roles ur WHERE ur.user_id = p_user;
    IF p_role IS NOT NULL THEN
        PERFORM authx.user_grant(p_user, p_role);
    END IF;
END
$$;

-- Audit events of this file have ids above this.
SELECT coalesce(max(id), 0) AS audit0 FROM authx.audit_log \gset

SELECT authx.user_create('pgtap-rbac-owner@example.com', 'rbac password 1') AS u_owner,
       authx.user_create('pgtap-rbac-viewer@example.com', 'rbac password 1') AS u_viewer,
       authx.user_create('pgtap-rbac-admin@example.com', 'rbac password 1') AS u_admin,
       authx.user_create('pgtap-rbac-plain@example.com', 'rbac password 1') AS u_plain,
       authx.user_create('pgtap-rbac-temp@example.com', 'rbac password 1') AS u_temp,
       authx.user_create('pgtap-rbac-gone@example.com', 'rbac password 1') AS u_gone,
       authx.user_create('pgtap-rbac-race@example.com', 'rbac password 1') AS u_race \gset

-- ================================================================ seeds
SELECT results_eq(
    $$SELECT name COLLATE "default", parent COLLATE "default" FROM authx.roles WHERE seeded ORDER BY name$$,
    $$VALUES ('admin', 'manager'), ('guest', NULL), ('manager', 'user'), ('user', 'guest')$$,
    'seeds: guest < user < manager < admin, marked seeded');
SELECT results_eq(
    $$SELECT role COLLATE "default", permission COLLATE "default" FROM authx.role_permissions WHERE seeded$$,
    $$VALUES ('admin', '*:*')$$,
    'seeds: admin holds *:*, the only seeded permission');
SELECT is((SELECT array_agg(name ORDER BY name) FROM authx.role_list()
            WHERE name IN ('guest', 'user', 'manager') AND permissions = '{}'),
          ARRAY['guest', 'manager', 'user'], 'seeds: guest, user and manager hold nothing of their own');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'admin')$$, :'u_admin'), 'user_grant admin');
SELECT results_eq(
    format('SELECT role, inherited_from FROM authx.user_roles(%L)', :'u_admin'),
    $$VALUES ('admin', NULL), ('guest', 'admin'), ('manager', 'admin'), ('user', 'admin')$$,
    'an admin inherits manager, user and guest');
SELECT ok(authx.has_permission(:'u_admin', 'anything:at-all') AND authx.has_permission(:'u_admin', 'docs:*')
          AND authx.has_permission(:'u_admin', '*:read') AND authx.has_permission(:'u_admin', '*:*'),
          'an admin holds everything, wildcards included (*:*)');
SELECT is(authx.user_permissions(:'u_admin'), '{*:*}', 'an admin''s permissions are {*:*}');

-- ================================================================ role_create
SELECT lives_ok($$SELECT authx.role_create('tap11_viewer', NULL, 'Reads documents.')$$, 'role_create tap11_viewer');
SELECT lives_ok($$SELECT authx.role_create('tap11_editor', 'tap11_viewer')$$, 'role_create tap11_editor < tap11_viewer');
SELECT lives_ok($$SELECT authx.role_create('tap11_lead', 'tap11_editor')$$, 'role_create tap11_lead < tap11_editor');
SELECT lives_ok($$SELECT authx.role_create('tap11_owner', 'tap11_lead')$$, 'role_create tap11_owner < tap11_lead');
SELECT lives_ok($$SELECT authx.role_create(n) FROM unnest(ARRAY['tap11_docs', 'tap11_reader', 'tap11_proj',
                                                                  'tap11_projall', 'tap11_race', 'tap11_tmp']) n$$,
                'role_create of roles without a parent');
SELECT lives_ok($$SELECT authx.role_create('tap11.x-y_9' || repeat('z', 52))$$,
                'role_create: 63 characters of a-z 0-9 _ . - are a name');
SELECT throws_ok(format('SELECT authx.role_create(%L)', n), '22023', format('invalid role name "%s"', n),
                 format('role_create refuses "%s" (22023)', left(n, 20)))
  FROM unnest(ARRAY['', 'Tap11', '1tap', '_tap', '.tap', 'tap 11', 'tap:11', 'tap/11', 'tap11é',
                    'tap11' || repeat('z', 59)]) n;
SELECT throws_ok($$SELECT authx.role_create('tap11_viewer')$$, '42710', 'role "tap11_viewer" already exists',
                 'role_create: an existing name is 42710');
SELECT throws_ok($$SELECT authx.role_create('admin')$$, '42710', 'role "admin" already exists',
                 'role_create: a seeded name is 42710 too');
SELECT throws_ok($$SELECT authx.role_create('tap11_orphan', 'tap11_missing')$$, '42704',
                 'role "tap11_missing" does not exist', 'role_create: an unknown parent is 42704');
SELECT throws_ok('SELECT authx.role_create(NULL)', '22004', 'name must not be null', 'role_create(NULL) is 22004');
SELECT lives_ok($$SELECT authx.role_create('tap11_long', description => repeat('d', 5000))$$,
                'role_create with a 5000-character description');
SELECT is((SELECT length(description) FROM authx.role_list() WHERE name = 'tap11_long'), 1000,
          'the description is cut at 1000 characters');

-- ================================================================ role_grant, role_revoke
SELECT is(authx.role_grant('tap11_viewer', 'docs:read'), true, 'role_grant: true when new');
SELECT is(authx.role_grant('tap11_viewer', 'docs:read'), false, 'role_grant: false when the role has it already');
SELECT is(array_agg(authx.role_grant(r, p) ORDER BY r, p),
          ARRAY[true, true, true, true, true, true, true, true],
          'role_grant of the permissions the tests use')
  FROM (VALUES ('tap11_editor', 'docs:write'), ('tap11_lead', 'reports:*'), ('tap11_owner', '*:export'),
               ('tap11_docs', 'docs:*'), ('tap11_reader', '*:read'), ('tap11_proj', 'projects/42:read'),
               ('tap11_projall', 'projects:*'), ('tap11_race', 'race:run')) v(r, p);
SELECT is(ARRAY[authx.role_grant('tap11_tmp', p), authx.role_revoke('tap11_tmp', p)], ARRAY[true, true],
          format('valid permission: %s (granted, revoked)', left(p, 30)))
  FROM unnest(ARRAY['*:*', 'docs:*', '*:read', 'projects/42:read', 'a.b-c_d/e:f.g-h_i', '0:9',
                    repeat('a', 100) || ':' || repeat('b', 100)]) p;
SELECT throws_ok(format('SELECT authx.role_grant(%L, %L)', 'tap11_tmp', p), '22023',
                 format('invalid permission "%s"', p), format('role_grant refuses "%s" (22023)', left(p, 20)))
  FROM unnest(ARRAY['Docs:read', 'docs', 'docs:', ':read', 'a:b:c', 'docs:read ', '*x:read', 'docs:*x',
                    '/docs:read', 'docs:re/ad', '', repeat('a', 101) || ':read', 'docs:' || repeat('r', 101)]) p;
SELECT throws_ok($$SELECT authx.role_grant('tap11_tmp', NULL)$$, '22004', 'permission must not be null',
                 'role_grant: a NULL permission is 22004');
SELECT throws_ok($$SELECT authx.role_revoke('tap11_tmp', 'Docs:read')$$, '22023', 'invalid permission "Docs:read"',
                 'role_revoke refuses a malformed permission (22023)');
SELECT throws_ok($$SELECT authx.role_grant('tap11_missing', 'docs:read')$$, '42704', 'role "tap11_missing" does not exist',
                 'role_grant: unknown role 42704');
SELECT throws_ok($$SELECT authx.role_revoke('tap11_missing', 'docs:read')$$, '42704', 'role "tap11_missing" does not exist',
                 'role_revoke: unknown role 42704');
SELECT throws_ok($$SELECT authx.role_grant(NULL, 'docs:read')$$, '22004', 'role must not be null',
                 'role_grant: NULL role 22004');
SELECT is(authx.role_revoke('tap11_viewer', 'docs:*'), false, 'role_revoke does not expand wildcards (docs:* was not granted)');
SELECT is(authx.role_grant('tap11_tmp', 'tmp:a'), true, 'role_grant tmp:a');
SELECT is(authx.role_revoke('tap11_tmp', 'tmp:a'), true, 'role_revoke: true when the role had it');
SELECT is(authx.role_revoke('tap11_tmp', 'tmp:a'), false, 'role_revoke: false when it did not');
SELECT is((SELECT permissions FROM authx.role_list() WHERE name = 'tap11_tmp'), '{}'::text[],
          'nothing the refused calls tried was stored');

-- ================================================================ user_grant, user_revoke
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'tap11_owner'), authx.user_grant(%L, 'tap11_viewer'),
                               authx.user_grant(%L, 'tap11_race'), authx.user_grant(%L, 'tap11_viewer')$$,
                       :'u_owner', :'u_viewer', :'u_race', :'u_gone'),
                'user_grant of the roles the tests use');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'tap11_viewer', clock_timestamp() + interval '1 hour')$$, :'u_temp'),
                'user_grant with an expiry');
SELECT ok((SELECT expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes'
             FROM authx.user_roles(:'u_temp') WHERE role = 'tap11_viewer'),
          'user_roles shows the expiry');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'tap11_viewer')$$, :'u_temp'), 'user_grant again without expiry');
SELECT is((SELECT expires_at FROM authx.user_roles(:'u_temp') WHERE role = 'tap11_viewer'), NULL,
          'granting again replaced the expiry with none');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'tap11_viewer', clock_timestamp() + interval '2 hours')$$, :'u_temp'),
                'user_grant again with an expiry');
SELECT ok((SELECT expires_at > now() + interval '119 minutes' FROM authx.user_roles(:'u_temp') WHERE role = 'tap11_viewer'),
          'granting again set the new expiry');
SELECT is((SELECT count(*) FROM authx.user_roles WHERE user_id = :'u_temp')::int, 1, 'still one grant row');
SELECT throws_ok(format($$SELECT authx.user_grant(%L, 'tap11_viewer', now() - interval '1 second')$$, :'u_plain'),
                 '22023', 'expires_at is in the past', 'user_grant: a past expiry is 22023');
SELECT throws_ok(format($$SELECT authx.user_grant(%L, 'tap11_viewer')$$, '00000000-0000-0000-0000-000000000000'),
                 'P0002', 'user "00000000-0000-0000-0000-000000000000" does not exist', 'user_grant: unknown user P0002');
SELECT throws_ok(format($$SELECT authx.user_grant(%L, 'tap11_missing')$$, :'u_plain'), '42704',
                 'role "tap11_missing" does not exist', 'user_grant: unknown role 42704');
SELECT throws_ok($$SELECT authx.user_grant(NULL, 'tap11_viewer')$$, '22004', 'user_id must not be null',
                 'user_grant: NULL user 22004');
SELECT throws_ok(format('SELECT authx.user_grant(%L, NULL)', :'u_plain'), '22004', 'role must not be null',
                 'user_grant: NULL role 22004');
SELECT throws_ok(format($$SELECT authx.user_revoke(%L, 'tap11_missing')$$, :'u_plain'), '42704',
                 'role "tap11_missing" does not exist', 'user_revoke: unknown role 42704');
SELECT is(authx.user_revoke('00000000-0000-0000-0000-000000000000', 'tap11_viewer'), false,
          'user_revoke: false for an unknown user');
SELECT is(authx.user_revoke(:'u_plain', 'tap11_viewer'), false, 'user_revoke: false for a role the user does not hold');

-- ================================================================ has_permission
SELECT is(authx.has_permission(:'u_owner', p), want, format('owner: %s -> %s', p, want))
  FROM (VALUES ('docs:read', true), ('docs:write', true), ('reports:q1', true), ('reports:*', true),
               ('billing:export', true), ('*:export', true), ('docs:delete', false), ('docs:*', false),
               ('*:read', false), ('*:*', false), ('doc:read', false), ('docsx:read', false),
               ('docs:readx', false), ('projects/42:read', false)) v(p, want);
SELECT is(authx.has_permission(:'u_viewer', 'docs:read'), true, 'viewer: docs:read (own role)');
SELECT is(authx.has_permission(:'u_viewer', 'docs:write'), false, 'viewer: no docs:write (inheritance only goes up)');
SELECT pg_temp.grant_only(:'u_temp', 'tap11_docs') AS grant_only \gset
SELECT is(authx.has_permission(:'u_temp', p), want, format('docs:* holder: %s -> %s', p, want))
  FROM (VALUES ('docs:read', true), ('docs:anything', true), ('docs:*', true), ('docsx:read', false),
               ('*:read', false), ('*:*', false)) v(p, want);
SELECT pg_temp.grant_only(:'u_temp', 'tap11_reader') AS grant_only \gset
SELECT is(authx.has_permission(:'u_temp', p), want, format('*:read holder: %s -> %s', p, want))
  FROM (VALUES ('wiki:read', true), ('*:read', true), ('docs:*', false), ('docs:write', false), ('*:*', false)) v(p, want);
SELECT pg_temp.grant_only(:'u_temp', 'tap11_projall') AS grant_only \gset
SELECT is(authx.has_permission(:'u_temp', p), want, format('projects:* holder: %s -> %s', p, want))
  FROM (VALUES ('projects:read', true), ('projects:*', true), ('projects/42:read', false)) v(p, want);
SELECT pg_temp.grant_only(:'u_temp', 'tap11_proj') AS grant_only \gset
SELECT is(authx.has_permission(:'u_temp', p), want, format('projects/42:read holder: %s -> %s', p, want))
  FROM (VALUES ('projects/42:read', true), ('projects/4:read', false), ('projects/42:write', false),
               ('projects:read', false)) v(p, want);
SELECT throws_ok(format('SELECT authx.has_permission(%L, %L)', :'u_owner', p), '22023',
                 format('invalid permission "%s"', p), format('has_permission refuses "%s" (22023)', p))
  FROM unnest(ARRAY['Docs:read', 'docs', 'docs:', ':read', 'a:b:c', 'docs:read ', '*x:read', '']) p;
SELECT is(authx.has_permission('00000000-0000-0000-0000-000000000000', 'docs:read'), false, 'unknown user: false');
SELECT is(authx.has_permission(NULL, 'docs:read'), NULL, 'NULL user: NULL');
SELECT is(authx.has_permission(:'u_owner', NULL), NULL, 'NULL permission: NULL');

-- The user's status.
SELECT is(authx.has_permission(:'u_viewer', 'docs:read'), true, 'viewer: docs:read while active');
SELECT is(authx.user_disable(:'u_viewer'), true, 'user_disable');
SELECT is(authx.has_permission(:'u_viewer', 'docs:read'), false, 'a disabled user holds nothing');
SELECT is(authx.user_permissions(:'u_viewer'), '{}', 'user_permissions of a disabled user: {}');
SELECT is(authx.user_enable(:'u_viewer'), true, 'user_enable');
SELECT is(authx.has_permission(:'u_viewer', 'docs:read'), true, 'enabled again: the permissions are back');
UPDATE authx.users SET status = 'locked' WHERE id = :'u_viewer';
SELECT is(authx.has_permission(:'u_viewer', 'docs:read'), true, 'a locked user keeps the permissions');
UPDATE authx.users SET status = 'active' WHERE id = :'u_viewer';
SELECT is(authx.has_permission(:'u_gone', 'docs:read'), true, 'gone: docs:read before the delete');
SELECT is(authx.user_delete(:'u_gone'), true, 'user_delete');
SELECT is(authx.has_permission(:'u_gone', 'docs:read'), false, 'a deleted user holds nothing');
SELECT is(authx.user_permissions(:'u_gone'), '{}', 'user_permissions of a deleted user: {}');
SELECT throws_ok(format($$SELECT authx.user_grant(%L, 'tap11_viewer')$$, :'u_gone'), 'P0002',
                 format('user "%s" does not exist', :'u_gone'), 'user_grant: a deleted user is P0002');
SELECT authx.user_revoke(:'u_gone', 'tap11_viewer') AS revoked \gset

-- ================================================================ the cache
-- A grant that ends in 2 seconds; the worker held back from here on.
SELECT pg_temp.grant_only(:'u_temp', NULL) AS grant_only \gset
SELECT authx.user_grant(:'u_temp', 'tap11_viewer', clock_timestamp() + interval '2 seconds') AS granted \gset
SELECT expires_at AS temp_exp FROM authx.user_roles WHERE user_id = :'u_temp' AND role = 'tap11_viewer' \gset
SELECT pg_temp.hold_worker() AS held \gset
SELECT pg_temp.mark() AS marked \gset
SELECT is(authx.has_permission(:'u_temp', 'docs:read'), true, 'a time-bound grant counts before its expiry');
SELECT is(authx.has_permission(:'u_temp', 'docs:read'), true, 'the same call again');
SELECT is(pg_temp.delta(), '{1,1}'::bigint[], 'stats: the first call after a change is a miss, the second identical call a hit');
SELECT is(authx.has_permission(:'u_temp', 'docs:write'), false, 'another permission of the same user');
SELECT is(pg_temp.delta(), '{2,1}'::bigint[], 'stats: answered from the same entry (a hit)');
SELECT pg_sleep_until(:'temp_exp'::timestamptz + interval '0.2 seconds') AS slept \gset
SELECT is(authx.has_permission(:'u_temp', 'docs:read'), false,
          'right after its expiry the grant no longer counts, though the answer was cached');
SELECT is(pg_temp.delta(), '{2,2}'::bigint[], 'stats: the expiry alone made the entry stale (a miss)');
SELECT is(authx.has_permission(:'u_temp', 'docs:read'), false, 'and stays so');
SELECT is(authx.user_permissions(:'u_temp'), '{}', 'user_permissions: the expired grant is gone');
SELECT is((SELECT count(*) FROM authx.user_roles(:'u_temp'))::int, 0, 'user_roles: the expired grant is absent');
SELECT is((SELECT users FROM authx.role_list() WHERE name = 'tap11_viewer'),
          (SELECT count(*) - 1 FROM authx.user_roles WHERE role = 'tap11_viewer'),
          'role_list: the expired grant (still stored) is not counted');

-- Another backend's commits count at this backend's next call.
SELECT is(authx.has_permission(:'u_race', 'remote:op'), false, 'race: no remote:op');
SELECT pg_temp.remote($$authx.role_grant('tap11_race', 'remote:op')$$) AS r \gset
SELECT is(authx.has_permission(:'u_race', 'remote:op'), true, 'a grant committed by another backend counts at the next call');
SELECT pg_temp.remote(format('authx.user_disable(%L)', :'u_race')) AS r \gset
SELECT is(authx.has_permission(:'u_race', 'remote:op'), false, 'a user disabled by another backend holds nothing at the next call');
SELECT pg_temp.remote(format('authx.user_enable(%L)', :'u_race')) AS r \gset
SELECT is(authx.has_permission(:'u_race', 'remote:op'), true, 'enabled by another backend: back at the next call');
SELECT pg_temp.remote($$authx.role_revoke('tap11_race', 'remote:op')$$) AS r \gset
SELECT is(authx.has_permission(:'u_race', 'remote:op'), false, 'a revocation committed by another backend counts at the next call');

-- A revocation committed while this backend's REPEATABLE READ transaction
-- runs: inside, the transaction's snapshot answers; once it ends, the
-- revocation counts.
SELECT is(authx.has_permission(:'u_race', 'race:run'), true, 'race: race:run');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT is(authx.has_permission(:'u_race', 'race:run'), true, 'REPEATABLE READ: race:run at the start');
SELECT pg_temp.remote($$authx.role_revoke('tap11_race', 'race:run')$$) AS r \gset
SELECT is(authx.has_permission(:'u_race', 'race:run'), 'race:run' = ANY (authx.user_permissions(:'u_race')),
          'REPEATABLE READ: has_permission agrees with user_permissions (the same snapshot)');
COMMIT;
SELECT is(authx.user_permissions(:'u_race'), '{}', 'after the transaction, user_permissions sees the revocation');
SELECT is(authx.has_permission(:'u_race', 'race:run'), false,
          'after the transaction, has_permission sees the revocation too (the snapshot''s answer was not kept)');
-- The same within one READ COMMITTED statement.
SELECT pg_temp.remote($$authx.role_grant('tap11_race', 'race:run')$$) AS r \gset
SELECT is(authx.has_permission(:'u_race', 'race:run'), true, 'race: race:run granted again');
SELECT pg_temp.remote($$authx.role_revoke('tap11_race', 'race:run')$$) AS r,
       authx.has_permission(:'u_race', 'race:run') AS during \gset
SELECT is(authx.has_permission(:'u_race', 'race:run'), false,
          'a revocation committed during one of this backend''s statements counts from the next statement on');
SELECT pg_temp.release_worker() AS released \gset

-- A maintenance pass that deletes no grant changes no permission.
DELETE FROM authx.user_roles WHERE expires_at <= now();
SELECT is(authx.has_permission(:'u_owner', 'docs:read'), true, 'owner: docs:read (cached)');
SELECT pg_temp.mark() AS marked \gset
SELECT is(authx.maintenance_run() -> 'roles', '{"grants_expired": 0}'::jsonb, 'maintenance_run: no expired grant');
SELECT is(authx.has_permission(:'u_owner', 'docs:read'), true, 'owner: docs:read after the pass');
SELECT is(pg_temp.delta(), '{1,0}'::bigint[],
          'stats: a maintenance pass that deleted no grant left the permission caches alone (a hit)');

-- ================================================================ transactions
SELECT is(authx.has_permission(:'u_plain', 'docs:read'), false, 'plain: no roles, no docs:read (cached)');
BEGIN;
SELECT authx.has_permission(:'u_plain', 'docs:read') AS tx_before \gset
SELECT authx.user_grant(:'u_plain', 'tap11_viewer') AS granted \gset
SELECT authx.has_permission(:'u_plain', 'docs:read') AS tx_granted \gset
SELECT authx.role_grant('tap11_viewer', 'tx:only') AS granted \gset
SELECT authx.has_permission(:'u_plain', 'tx:only') AS tx_role_grant, authx.has_permission(:'u_owner', 'tx:only') AS tx_owner \gset
SELECT authx.user_disable(:'u_plain') AS disabled \gset
SELECT authx.has_permission(:'u_plain', 'docs:read') AS tx_disabled \gset
ROLLBACK;
SELECT is(:'tx_before'::boolean, false, 'in a transaction: false before the grant');
SELECT is(:'tx_granted'::boolean, true, 'a grant made in this transaction counts in it at once, after a cached false');
SELECT is(:'tx_role_grant'::boolean, true, 'so does a role_grant made in it');
SELECT is(:'tx_owner'::boolean, true, '... for a user four levels below too');
SELECT is(:'tx_disabled'::boolean, false, 'a user disabled in this transaction holds nothing in it');
SELECT is(authx.has_permission(:'u_plain', 'docs:read'), false, 'the rolled-back grant never counted');
SELECT is(authx.has_permission(:'u_owner', 'tx:only'), false, 'nor the rolled-back role_grant');
BEGIN;
SAVEPOINT s;
SELECT authx.user_grant(:'u_plain', 'tap11_viewer') AS granted \gset
SELECT authx.has_permission(:'u_plain', 'docs:read') AS sp_granted \gset
ROLLBACK TO SAVEPOINT s;
SELECT authx.has_permission(:'u_plain', 'docs:read') AS sp_rolled_back \gset
COMMIT;
SELECT is(:'sp_granted'::boolean, true, 'a grant after a savepoint counts');
SELECT is(:'sp_rolled_back'::boolean, false, 'rolled back to the savepoint, it no longer does');
SELECT is(authx.has_permission(:'u_plain', 'docs:read'), false, 'nor after the commit');

-- A committed grant on the top role counts at once four levels below.
SELECT is(authx.has_permission(:'u_owner', 'wiki:edit'), false, 'owner: no wiki:edit (cached)');
SELECT is(authx.role_grant('tap11_viewer', 'wiki:edit'), true, 'role_grant wiki:edit to tap11_viewer');
SELECT is(authx.has_permission(:'u_owner', 'wiki:edit'), true, 'owner (tap11_owner < lead < editor < viewer): wiki:edit at once');
SELECT is(authx.role_revoke('tap11_viewer', 'wiki:edit'), true, 'role_revoke wiki:edit');
SELECT is(authx.has_permission(:'u_owner', 'wiki:edit'), false, 'owner: wiki:edit gone at once');

-- PREPARE TRANSACTION after an RBAC change, in another backend.
SELECT dblink_exec('tap11_w', 'BEGIN') AS b \gset
SELECT pg_temp.remote($$authx.role_grant('tap11_viewer', 'prepared:x')$$) AS r \gset
SELECT throws_ok($$SELECT dblink_exec('tap11_w', 'PREPARE TRANSACTION ''tap11_rbac''')$$, '0A000',
                 'cannot prepare a transaction that changed authx roles or grants',
                 'PREPARE TRANSACTION after a role_grant is refused (0A000)');
SELECT is((SELECT count(*) FROM pg_catalog.pg_prepared_xacts WHERE gid = 'tap11_rbac')::int, 0, 'nothing was prepared');
SELECT is(authx.has_permission(:'u_viewer', 'prepared:x'), false, 'and the grant was rolled back');

-- ================================================================ user_permissions, user_roles
SELECT is(authx.user_permissions(:'u_owner'), '{*:export,docs:read,docs:write,reports:*}',
          'user_permissions: inherited ones included, sorted');
SELECT pg_temp.grant_only(:'u_temp', 'tap11_editor') AS grant_only \gset
SELECT authx.user_grant(:'u_temp', 'tap11_viewer') AS granted \gset
SELECT is(authx.user_permissions(:'u_temp'), '{docs:read,docs:write}', 'user_permissions: each once (docs:read held twice)');
SELECT is(authx.user_permissions('00000000-0000-0000-0000-000000000000'), '{}', 'user_permissions: {} for an unknown user');
SELECT results_eq(
    format('SELECT role, inherited_from, expires_at FROM authx.user_roles(%L)', :'u_owner'),
    $$VALUES ('tap11_editor', 'tap11_owner', NULL::timestamptz), ('tap11_lead', 'tap11_owner', NULL),
             ('tap11_owner', NULL, NULL), ('tap11_viewer', 'tap11_owner', NULL)$$,
    'user_roles: the direct grant (inherited_from NULL) and its ancestors, with the role granted');
SELECT pg_temp.grant_only(:'u_temp', NULL) AS grant_only \gset
SELECT authx.user_grant(:'u_temp', 'tap11_editor', clock_timestamp() + interval '1 hour') AS granted \gset
SELECT results_eq(
    format($$SELECT role, inherited_from, expires_at > now() + interval '59 minutes' FROM authx.user_roles(%L)$$, :'u_temp'),
    $$VALUES ('tap11_editor', NULL, true), ('tap11_viewer', 'tap11_editor', true)$$,
    'user_roles: an inherited role carries the expiry of the grant it comes through');
SELECT pg_temp.grant_only(:'u_temp', 'user') AS grant_only \gset
SELECT authx.user_grant(:'u_temp', 'manager', clock_timestamp() + interval '1 hour') AS granted \gset
SELECT results_eq(
    format('SELECT role, inherited_from, expires_at IS NULL FROM authx.user_roles(%L)', :'u_temp'),
    $$VALUES ('guest', 'user', true), ('manager', NULL, false), ('user', NULL, true)$$,
    'user_roles: a role held through two grants is listed once, with the longest-lived (guest through user, for good)');
SELECT pg_temp.grant_only(:'u_temp', NULL) AS grant_only \gset

-- ================================================================ role_set_parent
SELECT throws_ok(format('SELECT authx.role_set_parent(%L, %L)', r, p), '22023',
                 format('role "%s" cannot inherit from "%s": that would make a cycle', r, p),
                 format('role_set_parent(%s, %s) would make a cycle (22023)', r, p))
  FROM (VALUES ('tap11_viewer', 'tap11_viewer'), ('tap11_viewer', 'tap11_editor'), ('tap11_viewer', 'tap11_owner'),
               ('tap11_editor', 'tap11_lead'), ('guest', 'admin')) v(r, p);
SELECT results_eq(
    $$SELECT name COLLATE "default", parent COLLATE "default" FROM authx.roles WHERE name IN ('tap11_viewer', 'tap11_editor', 'tap11_lead',
                                                                   'tap11_owner', 'guest') ORDER BY name$$,
    $$VALUES ('guest', NULL), ('tap11_editor', 'tap11_viewer'), ('tap11_lead', 'tap11_editor'),
             ('tap11_owner', 'tap11_lead'), ('tap11_viewer', NULL)$$,
    'the refused changes left the hierarchy as it was');
SELECT throws_ok($$SELECT authx.role_set_parent('tap11_missing', 'guest')$$, '42704', 'role "tap11_missing" does not exist',
                 'role_set_parent: unknown role 42704');
SELECT throws_ok($$SELECT authx.role_set_parent('tap11_viewer', 'tap11_missing')$$, '42704',
                 'role "tap11_missing" does not exist', 'role_set_parent: unknown parent 42704');
SELECT throws_ok($$SELECT authx.role_set_parent(NULL, 'guest')$$, '22004', NULL, 'role_set_parent: NULL role 22004');
SELECT lives_ok($$SELECT authx.role_set_parent('tap11_lead', NULL)$$, 'role_set_parent(tap11_lead, NULL) detaches it');
SELECT is((SELECT parent FROM authx.roles WHERE name = 'tap11_lead'), NULL, 'tap11_lead has no parent');
SELECT is(authx.has_permission(:'u_owner', 'docs:read'), false, 'owner: docs:read went with the detached branch');
SELECT is(authx.has_permission(:'u_owner', 'reports:q1'), true, 'owner: reports:* (tap11_lead) stays');
SELECT lives_ok($$SELECT authx.role_set_parent('tap11_lead', 'tap11_editor')$$, 'role_set_parent(tap11_lead, tap11_editor)');
SELECT is(authx.has_permission(:'u_owner', 'docs:read'), true, 'owner: docs:read back');

-- ================================================================ role_drop
SELECT throws_ok($$SELECT authx.role_drop('tap11_viewer')$$, '2BP01', 'role "tap11_viewer" is the parent of role "tap11_editor"',
                 'role_drop: refused while a role inherits from it (2BP01)');
SELECT throws_ok($$SELECT authx.role_drop('tap11_missing')$$, '42704', 'role "tap11_missing" does not exist',
                 'role_drop: unknown role 42704');
SELECT throws_ok('SELECT authx.role_drop(NULL)', '22004', 'role must not be null', 'role_drop(NULL) is 22004');
SELECT lives_ok($$SELECT authx.role_create('tap11_doomed', 'tap11_viewer')$$, 'role_create tap11_doomed');
SELECT is(authx.role_grant('tap11_doomed', 'doomed:use'), true, 'role_grant doomed:use');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'tap11_doomed')$$, :'u_plain'), 'user_grant tap11_doomed');
SELECT is(authx.has_permission(:'u_plain', 'doomed:use'), true, 'plain: doomed:use');
SELECT lives_ok($$SELECT authx.role_drop('tap11_doomed')$$, 'role_drop tap11_doomed');
SELECT is(authx.has_permission(:'u_plain', 'doomed:use'), false, 'plain: doomed:use gone with the role');
SELECT is((SELECT count(*) FROM authx.role_permissions WHERE role = 'tap11_doomed')::int, 0, 'role_drop took its permissions');
SELECT is((SELECT count(*) FROM authx.user_roles WHERE role = 'tap11_doomed')::int, 0, 'role_drop took its user grants');

-- ================================================================ role_list
SELECT results_eq(
    $$SELECT name, parent, description, permissions, users FROM authx.role_list()
       WHERE name IN ('tap11_viewer', 'tap11_editor', 'tap11_lead', 'tap11_owner') ORDER BY name$$,
    $$VALUES ('tap11_editor', 'tap11_viewer', NULL, '{docs:write}'::text[], 0::bigint),
             ('tap11_lead', 'tap11_editor', NULL, '{reports:*}', 0),
             ('tap11_owner', 'tap11_lead', NULL, '{*:export}', 1),
             ('tap11_viewer', NULL, 'Reads documents.', '{docs:read}', 1)$$,
    'role_list: parent, description, own permissions, live holders');
SELECT lives_ok($$SELECT authx.role_grant('tap11_tmp', p) FROM unnest(ARRAY['b:b', '*:a', 'a:*', 'a/b:c']) p$$,
                'role_grant four permissions');
SELECT is((SELECT permissions FROM authx.role_list() WHERE name = 'tap11_tmp'), '{*:a,a/b:c,a:*,b:b}',
          'role_list: permissions sorted bytewise');

-- ================================================================ audit
SELECT lives_ok(format($$
    SELECT authx.role_create('tap11_audit', 'tap11_viewer');
    SELECT authx.role_grant('tap11_audit', 'audit:read'), authx.role_grant('tap11_audit', 'audit:read');
    SELECT authx.role_revoke('tap11_audit', 'audit:read'), authx.role_revoke('tap11_audit', 'audit:read');
    SELECT authx.role_set_parent('tap11_audit', NULL);
    SELECT authx.role_set_parent('tap11_audit', 'tap11_editor');
    SELECT authx.user_grant(%1$L, 'tap11_audit', clock_timestamp() + interval '1 day');
    SELECT authx.user_grant(%1$L, 'tap11_audit');
    SELECT authx.user_revoke(%1$L, 'tap11_audit'), authx.user_revoke(%1$L, 'tap11_audit');
    SELECT authx.user_grant(%1$L, 'tap11_audit');
    SELECT authx.role_drop('tap11_audit')$$, :'u_plain'),
    'the life of role tap11_audit');
SELECT results_eq(
    format($$SELECT event_type, severity::text, user_id IS NOT DISTINCT FROM %L::uuid, details - 'expires_at',
                    jsonb_typeof(details->'expires_at')
               FROM authx.audit_log WHERE id > %s AND details->>'role' = 'tap11_audit' ORDER BY id$$,
           :'u_plain', :'audit0'),
    $$VALUES ('role.created', 'info', false, '{"role": "tap11_audit", "parent": "tap11_viewer"}'::jsonb, NULL::text),
             ('role.permission_granted', 'medium', false, '{"role": "tap11_audit", "permission": "audit:read"}', NULL),
             ('role.permission_revoked', 'medium', false, '{"role": "tap11_audit", "permission": "audit:read"}', NULL),
             ('role.parent_changed', 'medium', false, '{"role": "tap11_audit", "from": "tap11_viewer", "to": null}', NULL),
             ('role.parent_changed', 'medium', false, '{"role": "tap11_audit", "from": null, "to": "tap11_editor"}', NULL),
             ('user.role_granted', 'medium', true, '{"role": "tap11_audit"}', 'string'),
             ('user.role_granted', 'medium', true, '{"role": "tap11_audit"}', 'null'),
             ('user.role_revoked', 'medium', true, '{"role": "tap11_audit"}', NULL),
             ('user.role_granted', 'medium', true, '{"role": "tap11_audit"}', 'null'),
             ('role.dropped', 'medium', false, '{"role": "tap11_audit", "users": 1}', NULL)$$,
    'audit: one event per change, with its details; none for calls that changed nothing');
SELECT is((SELECT count(*) FROM authx.audit_log
            WHERE id > :'audit0' AND event_type LIKE 'role.%' AND details->>'role' IN ('tap11_orphan', 'tap11_missing'))::int, 0,
          'audit: no event for refused calls');
SELECT is((SELECT count(*) FROM authx.audit_log
            WHERE id > :'audit0' AND event_type = 'role.permission_granted' AND details->>'permission' = 'prepared:x')::int, 0,
          'audit: no event from the rolled-back transaction');

-- ================================================================ maintenance
DELETE FROM authx.user_roles WHERE expires_at <= now();
BEGIN;
INSERT INTO authx.user_roles (user_id, role, expires_at)
VALUES (:'u_temp', 'tap11_viewer', now() - interval '1 minute'), (:'u_temp', 'tap11_editor', now() + interval '1 hour');
SELECT is(authx.maintenance_run() -> 'roles', '{"grants_expired": 1}'::jsonb,
          'maintenance_run deletes the expired grant (roles -> grants_expired)');
SELECT is((SELECT array_agg(role COLLATE "default") FROM authx.user_roles WHERE user_id = :'u_temp'), ARRAY['tap11_editor'],
          'and keeps the live one');
COMMIT;

-- ================================================================ privileges
SET ROLE authx_app;
SELECT is(authx.has_permission(:'u_owner', 'docs:read'), true, 'app: has_permission works');
SELECT is(authx.user_permissions(:'u_viewer'), '{docs:read}', 'app: user_permissions works');
SELECT is((SELECT count(*) FROM authx.user_roles(:'u_owner'))::int, 4, 'app: user_roles works');
SELECT throws_ok(c, '42501', NULL, 'app: cannot ' || what)
  FROM (VALUES
    ('call role_create', $$SELECT authx.role_create('tap11_by_app')$$),
    ('call role_set_parent', $$SELECT authx.role_set_parent('tap11_tmp', 'guest')$$),
    ('call role_drop', $$SELECT authx.role_drop('tap11_tmp')$$),
    ('call role_grant', $$SELECT authx.role_grant('tap11_tmp', 'app:x')$$),
    ('call role_revoke', $$SELECT authx.role_revoke('tap11_tmp', 'b:b')$$),
    ('call role_list', $$SELECT * FROM authx.role_list()$$),
    ('call user_grant', format($$SELECT authx.user_grant(%L, 'admin')$$, :'u_plain')),
    ('call user_revoke', format($$SELECT authx.user_revoke(%L, 'tap11_viewer')$$, :'u_viewer')),
    ('read authx.roles', 'SELECT * FROM authx.roles'),
    ('read authx.role_permissions', 'SELECT * FROM authx.role_permissions'),
    ('read authx.user_roles', 'SELECT * FROM authx.user_roles'),
    ('write authx.user_roles', format($$INSERT INTO authx.user_roles (user_id, role) VALUES (%L, 'admin')$$, :'u_plain')),
    ('call _rbac_resolve', format('SELECT * FROM authx._rbac_resolve(%L, now())', :'u_owner')),
    ('call _rbac_purge', 'SELECT authx._rbac_purge(now())'),
    ('call _role_require', $$SELECT authx._role_require('admin')$$),
    ('call _permissions_normalize', $$SELECT authx._permissions_normalize('{a:b}', 'permission')$$)) v(what, c);
RESET ROLE;
SET ROLE authx_admin;
SELECT lives_ok($$SELECT authx.role_create('tap11_by_admin', 'tap11_viewer')$$, 'admin: role_create');
SELECT is(authx.role_grant('tap11_by_admin', 'admin:made'), true, 'admin: role_grant');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'tap11_by_admin')$$, :'u_plain'), 'admin: user_grant');
SELECT is(authx.has_permission(:'u_plain', 'admin:made'), true, 'admin: has_permission');
SELECT is((SELECT users FROM authx.role_list() WHERE name = 'tap11_by_admin'), 1::bigint, 'admin: role_list');
SELECT is((SELECT count(*) FROM authx.user_roles WHERE role = 'tap11_by_admin')::int, 1, 'admin: reads authx.user_roles');
SELECT is((SELECT count(*) FROM authx.role_permissions WHERE role = 'tap11_by_admin')::int, 1,
          'admin: reads authx.role_permissions');
SELECT throws_ok($$INSERT INTO authx.roles (name) VALUES ('tap11_direct')$$, '42501', NULL,
                 'admin: cannot INSERT into authx.roles');
SELECT throws_ok($$UPDATE authx.role_permissions SET permission = '*:*'$$, '42501', NULL,
                 'admin: cannot UPDATE authx.role_permissions');
SELECT throws_ok('DELETE FROM authx.user_roles', '42501', NULL, 'admin: cannot DELETE from authx.user_roles');
SELECT is(authx.user_revoke(:'u_plain', 'tap11_by_admin'), true, 'admin: user_revoke');
SELECT lives_ok($$SELECT authx.role_set_parent('tap11_by_admin', NULL)$$, 'admin: role_set_parent');
SELECT lives_ok($$SELECT authx.role_drop('tap11_by_admin')$$, 'admin: role_drop');
RESET ROLE;

-- ================================================================ clean up
SELECT dblink_disconnect('tap11_lock') AS d1, dblink_disconnect('tap11_w') AS d2 \gset
DELETE FROM authx.users WHERE email LIKE 'pgtap-rbac-%@example.com';
UPDATE authx.roles SET parent = NULL WHERE name LIKE 'tap11%';
DELETE FROM authx.roles WHERE name LIKE 'tap11%';
RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA tap11 CASCADE;
RESET client_min_messages;
SELECT is((SELECT count(*) FROM authx.roles WHERE NOT seeded AND name LIKE 'tap11%')::int, 0,
          'clean: no role of this file is left');

SELECT * FROM finish();
