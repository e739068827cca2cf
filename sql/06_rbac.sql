--
-- Roles and permissions: the seeds, the API, what has_permission answers
-- (inheritance, wildcards, expiry, its cache, transactions), audit events,
-- maintenance, privileges, then every invalid input.
--
-- Roles made here are named reg_*, users rbac-*@example.com; the roles are
-- dropped at the end.
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
\set SHOW_CONTEXT never

-- The seeds: guest < user < manager < admin, and admin holds *:*.
SELECT name, parent, description, permissions, users FROM authx.role_list()
 WHERE name IN ('guest', 'user', 'manager', 'admin') ORDER BY name;
SELECT name, parent FROM authx.roles WHERE seeded ORDER BY name;
SELECT role, permission FROM authx.role_permissions WHERE seeded;

SELECT authx.user_create('rbac-owner@example.com', 'correct horse battery') AS owner,
       authx.user_create('rbac-viewer@example.com', 'correct horse battery') AS viewer,
       authx.user_create('rbac-admin@example.com', 'correct horse battery') AS adm,
       authx.user_create('rbac-temp@example.com', 'correct horse battery') AS temp,
       authx.user_create('rbac-plain@example.com', 'correct horse battery') AS plain,
       authx.user_create('rbac-gone@example.com', 'correct horse battery') AS gone \gset

-- Create: a hierarchy four levels deep (reg_owner < reg_lead < reg_editor <
-- reg_viewer), and roles holding wildcards.
SELECT authx.role_create('reg_viewer', description => 'Reads documents.');
SELECT authx.role_create('reg_editor', 'reg_viewer', 'Writes documents.');
SELECT authx.role_create('reg_lead', 'reg_editor');
SELECT authx.role_create('reg_owner', 'reg_lead');
SELECT authx.role_create('reg_docs');
SELECT authx.role_create('reg_reader');
SELECT authx.role_create('reg_all');
SELECT authx.role_create('reg.x-' || repeat('z', 57)) AS longest_name;
SELECT authx.role_drop('reg.x-' || repeat('z', 57)) AS dropped;
-- A description is cut at 1000 characters.
SELECT authx.role_create('reg_long', description => repeat('d', 5000));
SELECT length(description) FROM authx.role_list() WHERE name = 'reg_long';
SELECT authx.role_drop('reg_long');

-- Grant: true when new, false when the role had it already.
SELECT authx.role_grant('reg_viewer', 'docs:read') AS granted;
SELECT authx.role_grant('reg_viewer', 'docs:read') AS again;
SELECT p AS permission, authx.role_grant(r, p) AS granted
  FROM (VALUES ('reg_editor', 'docs:write'), ('reg_editor', 'projects/42:read'),
               ('reg_lead', 'reports:*'), ('reg_owner', '*:export'),
               ('reg_docs', 'docs:*'), ('reg_reader', '*:read'), ('reg_all', '*:*'),
               ('reg_all', 'x.y-z_0:a.b-c_9'), ('reg_all', 'a/b/c:d')) v(r, p);
-- Revoke: true once; wildcards are not expanded (docs:* does not remove docs:read).
SELECT authx.role_revoke('reg_all', 'x.y-z_0:a.b-c_9') AS revoked,
       authx.role_revoke('reg_all', 'x.y-z_0:a.b-c_9') AS again;
SELECT authx.role_revoke('reg_all', 'a/b/c:d') AS revoked;
SELECT authx.role_revoke('reg_viewer', 'docs:*') AS wildcard_not_expanded;
-- Parts of 100 characters are the longest allowed.
SELECT authx.role_grant('reg_all', repeat('a', 100) || ':' || repeat('b', 100)) AS longest,
       authx.role_revoke('reg_all', repeat('a', 100) || ':' || repeat('b', 100)) AS revoked;
SELECT name, parent, description, permissions, users FROM authx.role_list() WHERE name LIKE 'reg\_%' ORDER BY name;

-- has_permission: own roles, the roles they inherit from (four levels), and
-- wildcards.  A wanted wildcard is only satisfied by a wildcard at least as
-- wide: docs:* is not held through docs:read and docs:write.
SELECT authx.user_grant(:'owner', 'reg_owner'), authx.user_grant(:'viewer', 'reg_viewer'),
       authx.user_grant(:'adm', 'admin');
SELECT p AS wanted, authx.has_permission(:'owner', p) AS owner, authx.has_permission(:'viewer', p) AS viewer,
       authx.has_permission(:'adm', p) AS admin, authx.has_permission(:'plain', p) AS no_roles
  FROM (VALUES ('docs:read'), ('docs:write'), ('docs:delete'), ('docs:*'), ('projects/42:read'),
               ('projects/43:read'), ('projects:read'), ('projects/42:write'), ('reports:q1'), ('reports:*'),
               ('billing:export'), ('*:export'), ('*:read'), ('*:*'), ('doc:read'), ('docsx:read')) v(p);
-- docs:*, then *:read, then *:* held alone.
SELECT authx.user_grant(:'temp', 'reg_docs');
SELECT p AS wanted, authx.has_permission(:'temp', p) AS with_docs_star
  FROM (VALUES ('docs:read'), ('docs:anything'), ('docs:*'), ('docsx:read'), ('wiki:read'), ('*:read'), ('*:*')) v(p);
SELECT authx.user_revoke(:'temp', 'reg_docs') AS revoked, authx.user_grant(:'temp', 'reg_reader');
SELECT p AS wanted, authx.has_permission(:'temp', p) AS with_star_read
  FROM (VALUES ('docs:read'), ('wiki:read'), ('*:read'), ('docs:*'), ('docs:write'), ('*:*'), ('docs:readx')) v(p);
SELECT authx.user_revoke(:'temp', 'reg_reader') AS revoked, authx.user_grant(:'temp', 'reg_all');
SELECT p AS wanted, authx.has_permission(:'temp', p) AS with_star_star
  FROM (VALUES ('docs:read'), ('docs:*'), ('*:read'), ('*:*'), ('projects/42:read')) v(p);
SELECT authx.user_revoke(:'temp', 'reg_all') AS revoked, authx.user_revoke(:'temp', 'reg_all') AS again,
       authx.user_revoke('00000000-0000-0000-0000-000000000000', 'reg_all') AS unknown_user;
SELECT authx.has_permission(:'temp', 'docs:read') AS after_revoke;

-- Unknown users hold nothing; NULL in, NULL out.
SELECT authx.has_permission('00000000-0000-0000-0000-000000000000', 'docs:read') AS unknown_user,
       authx.has_permission(NULL, 'docs:read') IS NULL AS null_user,
       authx.has_permission(:'owner', NULL) IS NULL AS null_permission;

-- user_permissions: effective permissions, inherited ones included, sorted,
-- each once; user_roles: direct grants (inherited_from NULL) and the roles
-- they inherit, with the role granted.
SELECT authx.user_permissions(:'owner');
SELECT authx.user_permissions(:'viewer');
SELECT authx.user_permissions(:'adm');
SELECT authx.user_grant(:'temp', 'reg_editor'), authx.user_grant(:'temp', 'reg_viewer');
SELECT authx.user_permissions(:'temp') AS each_once;
SELECT authx.user_permissions('00000000-0000-0000-0000-000000000000') AS unknown_user,
       authx.user_permissions(NULL) IS NULL AS null_user;
SELECT role, inherited_from, expires_at FROM authx.user_roles(:'owner');
SELECT role, inherited_from, expires_at FROM authx.user_roles(:'adm');
SELECT role, inherited_from FROM authx.user_roles(:'temp');
SELECT count(*) AS unknown_user FROM authx.user_roles('00000000-0000-0000-0000-000000000000');
SELECT authx.user_revoke(:'temp', 'reg_editor'), authx.user_revoke(:'temp', 'reg_viewer');

-- A role held through two grants is listed once, with the longest-lived of
-- them: guest comes through manager (for an hour) and through user (for
-- good), so the user holds guest for good.
SELECT authx.user_grant(:'temp', 'manager', clock_timestamp() + interval '1 hour'), authx.user_grant(:'temp', 'user');
SELECT role, inherited_from, expires_at IS NULL AS for_good FROM authx.user_roles(:'temp');
SELECT authx.user_revoke(:'temp', 'manager'), authx.user_revoke(:'temp', 'user');

-- A grant with an end: granting again replaces the expiry, both ways.
SELECT authx.user_grant(:'temp', 'reg_viewer', clock_timestamp() + interval '1 hour');
SELECT role, expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS one_hour
  FROM authx.user_roles(:'temp');
SELECT authx.user_grant(:'temp', 'reg_viewer');
SELECT role, expires_at FROM authx.user_roles(:'temp');
SELECT authx.user_grant(:'temp', 'reg_viewer', clock_timestamp() + interval '2 hours');
SELECT role, expires_at > now() + interval '119 minutes' AS two_hours FROM authx.user_roles(:'temp');
SELECT users FROM authx.role_list() WHERE name = 'reg_viewer';

-- ...and it stops counting at that instant, also when this backend cached the
-- answer before.  The maintenance worker's purge of expired grants would
-- invalidate every cache; the lock holds it back, so only the expiry can.
SELECT value AS hits0 FROM authx.stats WHERE name = 'rbac_cache_hits' \gset
SELECT value AS misses0 FROM authx.stats WHERE name = 'rbac_cache_misses' \gset
SELECT authx.user_grant(:'temp', 'reg_viewer', clock_timestamp() + interval '2 seconds');
SELECT expires_at AS temp_exp FROM authx.user_roles WHERE user_id = :'temp' AND role = 'reg_viewer' \gset
BEGIN;
LOCK TABLE authx.user_roles IN SHARE MODE;
SELECT authx.has_permission(:'temp', 'docs:read') AS before_expiry;
SELECT authx.has_permission(:'temp', 'docs:read') AS cached, authx.has_permission(:'temp', 'docs:write') AS cached_too;
SELECT (SELECT value FROM authx.stats WHERE name = 'rbac_cache_hits') - :hits0 AS hits,
       (SELECT value FROM authx.stats WHERE name = 'rbac_cache_misses') - :misses0 AS misses;
SELECT pg_sleep_until(:'temp_exp'::timestamptz + interval '0.2 seconds');
SELECT authx.has_permission(:'temp', 'docs:read') AS after_expiry;
SELECT authx.has_permission(:'temp', 'docs:read') AS cached;
SELECT (SELECT value FROM authx.stats WHERE name = 'rbac_cache_hits') - :hits0 AS hits,
       (SELECT value FROM authx.stats WHERE name = 'rbac_cache_misses') - :misses0 AS misses;
SELECT authx.user_permissions(:'temp') AS expired, (SELECT count(*) FROM authx.user_roles(:'temp')) AS roles,
       (SELECT users FROM authx.role_list() WHERE name = 'reg_viewer') AS viewer_users;
COMMIT;

-- Changes made in this transaction count at once in it, even after a cached
-- answer; a rolled-back grant never counted anywhere.
SELECT authx.has_permission(:'plain', 'docs:read') AS before;
BEGIN;
SELECT authx.has_permission(:'plain', 'docs:read') AS cached;
SELECT authx.user_grant(:'plain', 'reg_viewer');
SELECT authx.has_permission(:'plain', 'docs:read') AS same_transaction;
SELECT authx.role_grant('reg_viewer', 'wiki:edit');
SELECT authx.has_permission(:'plain', 'wiki:edit') AS new_permission;
ROLLBACK;
SELECT authx.has_permission(:'plain', 'docs:read') AS rolled_back, authx.has_permission(:'owner', 'wiki:edit') AS rolled_back_too;
-- The same with a savepoint.
BEGIN;
SAVEPOINT s;
SELECT authx.user_grant(:'plain', 'reg_viewer');
SELECT authx.has_permission(:'plain', 'docs:read') AS granted;
ROLLBACK TO SAVEPOINT s;
SELECT authx.has_permission(:'plain', 'docs:read') AS rolled_back_to_savepoint;
COMMIT;
SELECT authx.has_permission(:'plain', 'docs:read') AS after_commit;

-- A committed change counts for answers this backend had cached: a grant to
-- the top of the hierarchy reaches the user four levels below.
SELECT authx.has_permission(:'owner', 'wiki:edit') AS before_grant;
SELECT authx.role_grant('reg_viewer', 'wiki:edit');
SELECT authx.has_permission(:'owner', 'wiki:edit') AS after_grant;
SELECT authx.role_revoke('reg_viewer', 'wiki:edit');
SELECT authx.has_permission(:'owner', 'wiki:edit') AS after_revoke;

-- A transaction that changed roles or grants cannot be prepared.
BEGIN;
SELECT authx.role_grant('reg_viewer', 'wiki:prepare');
PREPARE TRANSACTION 'rbac_regress';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'rbac_regress';
SELECT permissions FROM authx.role_list() WHERE name = 'reg_viewer';

-- The user's status: disabled and deleted users hold nothing; enabled again,
-- everything comes back; a locked user keeps the permissions.
SELECT authx.has_permission(:'viewer', 'docs:read') AS active;
SELECT authx.user_disable(:'viewer');
SELECT authx.has_permission(:'viewer', 'docs:read') AS disabled, authx.user_permissions(:'viewer') AS permissions;
SELECT authx.user_enable(:'viewer');
SELECT authx.has_permission(:'viewer', 'docs:read') AS enabled_again, authx.user_permissions(:'viewer') AS permissions;
UPDATE authx.users SET status = 'locked' WHERE id = :'viewer';
SELECT authx.has_permission(:'viewer', 'docs:read') AS locked;
UPDATE authx.users SET status = 'active' WHERE id = :'viewer';
SELECT authx.user_grant(:'gone', 'reg_viewer');
SELECT authx.has_permission(:'gone', 'docs:read') AS before_delete;
SELECT authx.user_delete(:'gone');
SELECT authx.has_permission(:'gone', 'docs:read') AS deleted, authx.user_permissions(:'gone') AS permissions;

-- role_set_parent: moving a role moves what it inherits; NULL detaches it.
SELECT authx.role_set_parent('reg_lead', NULL);
SELECT authx.has_permission(:'owner', 'reports:q1') AS own_line, authx.has_permission(:'owner', 'docs:read') AS detached;
SELECT role, inherited_from FROM authx.user_roles(:'owner');
SELECT authx.role_set_parent('reg_lead', 'reg_editor');
SELECT authx.has_permission(:'owner', 'docs:read') AS attached_again;
SELECT name, parent FROM authx.role_list() WHERE name LIKE 'reg\_%' AND parent IS NOT NULL ORDER BY name;

-- role_drop: refused while a role inherits from it; takes its permissions
-- and grants with it.
SELECT authx.role_create('reg_tmp', 'reg_viewer');
SELECT authx.role_grant('reg_tmp', 'tmp:use'), authx.user_grant(:'plain', 'reg_tmp');
SELECT authx.has_permission(:'plain', 'tmp:use') AS before_drop;
SELECT regress.try($$authx.role_drop('reg_viewer')$$) AS parent_of_reg_editor;
SELECT authx.role_drop('reg_tmp');
SELECT authx.has_permission(:'plain', 'tmp:use') AS after_drop,
       (SELECT count(*) FROM authx.role_permissions WHERE role = 'reg_tmp') AS permissions_left,
       (SELECT count(*) FROM authx.user_roles WHERE role = 'reg_tmp') AS grants_left;

-- Audit events, in the transaction of the change: one role's whole life.
SELECT authx.role_create('reg_audit', 'reg_viewer');
SELECT authx.role_grant('reg_audit', 'audit:read'), authx.role_grant('reg_audit', 'audit:read');
SELECT authx.role_revoke('reg_audit', 'audit:read'), authx.role_revoke('reg_audit', 'audit:read');
SELECT authx.role_set_parent('reg_audit', NULL);
SELECT authx.role_set_parent('reg_audit', 'reg_editor');
SELECT authx.user_grant(:'plain', 'reg_audit', clock_timestamp() + interval '1 day');
SELECT authx.user_grant(:'plain', 'reg_audit');
SELECT authx.user_revoke(:'plain', 'reg_audit'), authx.user_revoke(:'plain', 'reg_audit');
SELECT authx.user_grant(:'plain', 'reg_audit');
SELECT authx.role_drop('reg_audit');
BEGIN;
SELECT authx.role_create('reg_audit_rolled_back');
ROLLBACK;
SELECT event_type, severity, user_id = :'plain' AS plain, details - 'expires_at' AS details,
       jsonb_typeof(details->'expires_at') AS expires_at
  FROM authx.audit_log WHERE details->>'role' LIKE 'reg\_audit%' ORDER BY id;

-- Maintenance deletes grants that have expired (inserted directly: user_grant
-- refuses a past expiry), and keeps the others.
DELETE FROM authx.user_roles WHERE expires_at <= now();
BEGIN;
INSERT INTO authx.user_roles (user_id, role, expires_at)
VALUES (:'plain', 'reg_viewer', now() - interval '1 minute'), (:'plain', 'reg_editor', now() + interval '1 hour');
SELECT authx.maintenance_run() -> 'roles' AS roles;
SELECT role FROM authx.user_roles WHERE user_id = :'plain';
ROLLBACK;

-- Privileges: applications may ask, administrators may also manage.
SET ROLE authx_app;
SELECT authx.has_permission(:'owner', 'docs:read') AS app_has_permission;
SELECT authx.user_permissions(:'viewer') AS app_user_permissions;
SELECT role, inherited_from FROM authx.user_roles(:'viewer');
SELECT authx.role_create('reg_by_app');
SELECT authx.user_grant(:'plain', 'reg_viewer');
SELECT authx.role_grant('reg_viewer', 'docs:delete');
SELECT name FROM authx.role_list();
SELECT count(*) FROM authx.user_roles;
RESET ROLE;
SET ROLE authx_admin;
SELECT authx.role_create('reg_by_admin', 'reg_viewer');
SELECT authx.role_grant('reg_by_admin', 'admin:made');
SELECT authx.user_grant(:'plain', 'reg_by_admin');
SELECT authx.has_permission(:'plain', 'admin:made') AS admin_has_permission;
SELECT name, parent, permissions, users FROM authx.role_list() WHERE name = 'reg_by_admin';
SELECT role FROM authx.user_roles WHERE user_id = :'plain' AND role = 'reg_by_admin';
INSERT INTO authx.roles (name) VALUES ('reg_direct');
DELETE FROM authx.user_roles WHERE user_id = :'plain';
SELECT authx.user_revoke(:'plain', 'reg_by_admin');
SELECT authx.role_drop('reg_by_admin');
RESET ROLE;

-- Invalid input: one line each.
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.role_create(NULL)$$),
    ($$authx.role_create('')$$),
    ($$authx.role_create('Reg_upper')$$),
    ($$authx.role_create('1reg')$$),
    ($$authx.role_create('_reg')$$),
    ($$authx.role_create('reg role')$$),
    ($$authx.role_create('reg:role')$$),
    ($$authx.role_create('reg_' || repeat('x', 60))$$),
    ($$authx.role_create('reg_viewer')$$),
    ($$authx.role_create('admin')$$),
    ($$authx.role_create('reg_orphan', 'reg_missing')$$),
    ($$authx.role_set_parent(NULL, 'guest')$$),
    ($$authx.role_set_parent('reg_missing', 'guest')$$),
    ($$authx.role_set_parent('reg_viewer', 'reg_missing')$$),
    ($$authx.role_set_parent('reg_viewer', 'reg_viewer')$$),
    ($$authx.role_set_parent('reg_viewer', 'reg_editor')$$),
    ($$authx.role_set_parent('reg_viewer', 'reg_owner')$$),
    ($$authx.role_set_parent('guest', 'admin')$$),
    ($$authx.role_drop(NULL)$$),
    ($$authx.role_drop('reg_missing')$$),
    ($$authx.role_drop('reg_viewer')$$),
    ($$authx.role_drop('guest')$$),
    ($$authx.role_grant(NULL, 'docs:read')$$),
    ($$authx.role_grant('reg_missing', 'docs:read')$$),
    ($$authx.role_grant('reg_viewer', NULL)$$),
    ($$authx.role_revoke(NULL, 'docs:read')$$),
    ($$authx.role_revoke('reg_missing', 'docs:read')$$),
    ($$authx.role_revoke('reg_viewer', NULL)$$),
    ($$authx.user_grant(NULL, 'reg_viewer')$$),
    ($$authx.user_grant(authx.user_find('rbac-plain@example.com'), NULL)$$),
    ($$authx.user_grant(authx.user_find('rbac-plain@example.com'), 'reg_missing')$$),
    ($$authx.user_grant('00000000-0000-0000-0000-000000000000', 'reg_viewer')$$),
    ($$authx.user_grant((SELECT id FROM authx.users WHERE email = 'rbac-gone@example.com'), 'reg_viewer')$$),
    ($$authx.user_grant(authx.user_find('rbac-plain@example.com'), 'reg_viewer', now() - interval '1 second')$$),
    ($$authx.user_grant(authx.user_find('rbac-plain@example.com'), 'reg_viewer', clock_timestamp())$$),
    ($$authx.user_grant(authx.user_find('rbac-plain@example.com'), 'reg_viewer', '-infinity')$$),
    ($$authx.user_revoke(NULL, 'reg_viewer')$$),
    ($$authx.user_revoke(authx.user_find('rbac-plain@example.com'), NULL)$$),
    ($$authx.user_revoke(authx.user_find('rbac-plain@example.com'), 'reg_missing')$$),
    ($$authx.user_revoke('00000000-0000-0000-0000-000000000000', 'reg_viewer')$$)
) v(call);
-- A failed call changed nothing.
SELECT name, parent FROM authx.role_list() WHERE name LIKE 'reg\_%' ORDER BY name;

-- Malformed permissions: role_grant, role_revoke and has_permission refuse
-- each with 22023.
SELECT p AS permission,
       regress.try(format('authx.role_grant(%L, %L)', 'reg_viewer', p)) AS role_grant,
       regress.try(format('authx.role_revoke(%L, %L)', 'reg_viewer', p)) = regress.try(format('authx.role_grant(%L, %L)', 'reg_viewer', p)) AS role_revoke_same,
       regress.try(format('authx.has_permission(authx.user_find(%L), %L)', 'rbac-owner@example.com', p)) AS has_permission
  FROM (VALUES ('Docs:read'), ('docs:Read'), ('docs'), ('docs:'), (':read'), (':'), (''), ('*'), ('a:b:c'),
               ('docs:read '), (' docs:read'), ('docs :read'), ('*x:read'), ('x*:read'), ('docs:*x'),
               ('**:read'), ('docs:re/ad'), ('/docs:read'), ('_docs:read'), ('docs:-read'), ('.docs:read'),
               ('dócs:read'), ('docs;read'), ('docs:read:')) v(p);
SELECT length(p) AS length, regress.try(format('authx.role_grant(%L, %L)', 'reg_viewer', p)) ~ '^22023: invalid permission' AS role_grant_22023,
       regress.try(format('authx.has_permission(authx.user_find(%L), %L)', 'rbac-owner@example.com', p)) ~ '^22023: invalid permission' AS has_permission_22023
  FROM (VALUES (repeat('a', 101) || ':read'), ('docs:' || repeat('r', 101)), (repeat('a', 101) || ':' || repeat('b', 100))) v(p);
SELECT permissions FROM authx.role_list() WHERE name = 'reg_viewer';

-- Clean up: children first.
SELECT authx.role_drop(r) FROM unnest(ARRAY['reg_owner', 'reg_lead', 'reg_editor', 'reg_viewer', 'reg_docs',
                                             'reg_reader', 'reg_all']) r;
SELECT count(*) AS reg_roles_left FROM authx.roles WHERE name LIKE 'reg\_%';
SELECT name, parent, permissions FROM authx.role_list() WHERE name IN ('guest', 'user', 'manager', 'admin') ORDER BY name;
