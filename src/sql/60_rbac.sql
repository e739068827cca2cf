-- ================================================================
-- Roles and permissions (src/rbac.c)
-- ================================================================

-- The permission grammar, shared with API key scopes: "resource:action",
-- each part lowercase letters, digits and _ . - (the resource also /), or *.
CREATE FUNCTION authx._permission_valid(permission text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'authx_permission_valid'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._permission_valid(text) IS
'Internal. True when the text is a permission: resource:action, either part * or 1-100 of [a-z0-9_.-] (resource also /), starting with a letter or digit.';

-- Internal: check and normalize a list of permissions (scopes): sorted,
-- without duplicates; 22023 names the first bad one.
CREATE FUNCTION authx._permissions_normalize(p_list text[], p_what text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
BEGIN
    IF p_list IS NULL THEN
        RETURN '{}';
    END IF;
    SELECT p INTO v_bad FROM unnest(p_list) p WHERE p IS NULL OR NOT authx._permission_valid(p) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid %s "%s"', p_what, coalesce(v_bad, 'NULL')),
            HINT = 'Write permissions as resource:action, e.g. "documents:read", "documents:*" or "*:*".';
    END IF;
    RETURN coalesce((SELECT array_agg(DISTINCT p ORDER BY p) FROM unnest(p_list) p), '{}');
END
$$;
COMMENT ON FUNCTION authx._permissions_normalize(text[], text) IS
'Internal. Returns the permissions sorted and deduplicated; raises 22023 for a malformed one.';

CREATE TABLE authx.roles (
    name        text COLLATE "C" PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    parent      text COLLATE "C" REFERENCES authx.roles (name),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    seeded      boolean NOT NULL DEFAULT false,
    CHECK (parent IS DISTINCT FROM name)
);
CREATE INDEX roles_parent_idx ON authx.roles (parent);
COMMENT ON TABLE authx.roles IS
'Roles. A role inherits every permission of its parent, and of the parent''s parent, and so on. seeded marks the roles CREATE EXTENSION made.';

CREATE TABLE authx.role_permissions (
    role       text COLLATE "C" NOT NULL REFERENCES authx.roles (name) ON DELETE CASCADE,
    permission text COLLATE "C" NOT NULL CHECK (authx._permission_valid(permission)),
    granted_at timestamptz NOT NULL DEFAULT now(),
    seeded     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (role, permission)
);
COMMENT ON TABLE authx.role_permissions IS 'Permissions (resource:action, with * wildcards) granted to roles.';

CREATE TABLE authx.user_roles (
    user_id    uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    role       text COLLATE "C" NOT NULL REFERENCES authx.roles (name) ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (user_id, role)
);
CREATE INDEX user_roles_role_idx ON authx.user_roles (role);
COMMENT ON TABLE authx.user_roles IS
'Roles granted to users. A grant with expires_at stops counting at that instant; expired rows are deleted by maintenance.';

-- Seed roles: guest < user < manager < admin; admin holds *:*.  Only rows
-- made here are marked seeded, and a dump leaves them out (CREATE
-- EXTENSION makes them again), so a restore never collides with them.
INSERT INTO authx.roles (name, parent, description, seeded) VALUES
    ('guest', NULL, 'Unauthenticated or barely trusted users.', true),
    ('user', 'guest', 'Signed-up users.', true),
    ('manager', 'user', 'Users who manage others.', true),
    ('admin', 'manager', 'Everything.', true);
INSERT INTO authx.role_permissions (role, permission, seeded) VALUES ('admin', '*:*', true);
SELECT pg_catalog.pg_extension_config_dump('authx.roles', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('authx.role_permissions', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('authx.user_roles', '');

-- Any change to roles, grants or a user's status tells every backend's
-- permission cache at commit (src/rbac.c).
CREATE FUNCTION authx._rbac_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_rbac_changed'
LANGUAGE C;
COMMENT ON FUNCTION authx._rbac_changed() IS
'Internal. Trigger: the permission caches of all backends are invalidated when the transaction commits.';

-- Row triggers, so a statement that changes nothing (a purge that finds no
-- expired grant, a revoke of what was not granted) leaves caches alone;
-- TRUNCATE has only a statement form.  Deleting a user deletes their grants,
-- which fires the user_roles trigger.
CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE ON authx.roles
FOR EACH ROW EXECUTE FUNCTION authx._rbac_changed();
CREATE TRIGGER role_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON authx.role_permissions
FOR EACH ROW EXECUTE FUNCTION authx._rbac_changed();
CREATE TRIGGER user_roles_changed AFTER INSERT OR UPDATE OR DELETE ON authx.user_roles
FOR EACH ROW EXECUTE FUNCTION authx._rbac_changed();
CREATE TRIGGER roles_truncated AFTER TRUNCATE ON authx.roles
FOR EACH STATEMENT EXECUTE FUNCTION authx._rbac_changed();
CREATE TRIGGER role_permissions_truncated AFTER TRUNCATE ON authx.role_permissions
FOR EACH STATEMENT EXECUTE FUNCTION authx._rbac_changed();
CREATE TRIGGER user_roles_truncated AFTER TRUNCATE ON authx.user_roles
FOR EACH STATEMENT EXECUTE FUNCTION authx._rbac_changed();
CREATE TRIGGER users_status_rbac AFTER UPDATE OF status ON authx.users
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION authx._rbac_changed();

-- A deleted user holds no roles (a disabled one keeps them for when it is
-- enabled again; they do not count meanwhile).
CREATE FUNCTION authx._user_deleted_roles()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM authx.user_roles ur WHERE ur.user_id = NEW.id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION authx._user_deleted_roles() IS 'Internal. Trigger: deletes the role grants of a user who is deleted.';

CREATE TRIGGER users_deleted_roles AFTER UPDATE OF status ON authx.users
FOR EACH ROW WHEN (NEW.status = 'deleted' AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION authx._user_deleted_roles();

-- Internal: the effective permissions of a user at p_now, one row per
-- (permission, direct grant it comes through) with that grant's expiry.
-- Disabled and deleted users have none.  UNION (not ALL) and the depth
-- bound stop a cycle that slipped past the trigger.
CREATE FUNCTION authx._rbac_resolve(p_user_id uuid, p_now timestamptz)
RETURNS TABLE (permission text, expires_at timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE r (role, expires_at, depth) AS (
        SELECT ur.role, ur.expires_at, 1
          FROM authx.user_roles ur
          JOIN authx.users u ON u.id = ur.user_id
         WHERE ur.user_id = p_user_id AND u.status IN ('active', 'locked')
           AND (ur.expires_at IS NULL OR ur.expires_at > p_now)
        UNION
        SELECT ro.parent, r.expires_at, r.depth + 1
          FROM r JOIN authx.roles ro ON ro.name = r.role
         WHERE ro.parent IS NOT NULL AND r.depth < 64
    )
    SELECT DISTINCT rp.permission, r.expires_at
      FROM r JOIN authx.role_permissions rp ON rp.role = r.role;
$$;
COMMENT ON FUNCTION authx._rbac_resolve(uuid, timestamptz) IS
'Internal. Returns (permission, expiry of the grant it comes through) for every effective permission of the user at p_now.';

-- Internal: the role row, or 42704.
CREATE FUNCTION authx._role_require(p_name text)
RETURNS authx.roles
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r authx.roles;
BEGIN
    PERFORM authx._require(p_name, 'role');
    SELECT * INTO r FROM authx.roles WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('role "%s" does not exist', p_name),
            HINT = 'List roles with authx.role_list(); create one with authx.role_create.';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION authx._role_require(text) IS 'Internal. Returns the role; raises 42704 when it does not exist.';

-- A role may not become its own ancestor, however it is changed.
CREATE FUNCTION authx._roles_check_cycle()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.parent IS NOT NULL AND EXISTS (
        WITH RECURSIVE up (name, depth) AS (
            SELECT NEW.parent, 1
            UNION
            SELECT ro.parent, up.depth + 1 FROM up JOIN authx.roles ro ON ro.name = up.name
             WHERE ro.parent IS NOT NULL AND up.depth < 1000)
        SELECT 1 FROM up WHERE up.name = NEW.name)
    THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('role "%s" cannot inherit from "%s": that would make a cycle', NEW.name, NEW.parent),
            HINT = 'A role inherits from its parent; no role may be its own ancestor.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION authx._roles_check_cycle() IS 'Internal. Trigger: refuses a parent that would make a role its own ancestor.';

CREATE TRIGGER roles_check_cycle BEFORE INSERT OR UPDATE OF parent ON authx.roles
FOR EACH ROW EXECUTE FUNCTION authx._roles_check_cycle();

CREATE FUNCTION authx.role_create(name text, parent text DEFAULT NULL, description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(role_create.name, 'name');
    IF role_create.name !~ '^[a-z][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid role name "%s"', role_create.name),
            HINT = 'A role name starts with a lowercase letter and has at most 63 of a-z, 0-9, _ . -';
    END IF;
    IF role_create.parent IS NOT NULL THEN
        PERFORM authx._role_require(role_create.parent);
    END IF;
    BEGIN
        INSERT INTO authx.roles (name, parent, description)
        VALUES (role_create.name, role_create.parent, left(role_create.description, 1000));
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = format('role "%s" already exists', role_create.name),
            HINT = 'Pick another name, or change the existing role with authx.role_set_parent.';
    END;
    PERFORM authx._audit_tx('role.created', 'info', NULL,
                            jsonb_build_object('role', role_create.name, 'parent', role_create.parent));
END
$$;
COMMENT ON FUNCTION authx.role_create(text, text, text) IS
'Creates a role, optionally inheriting from parent. Raises 22023 for a bad name, 42710 when it exists, 42704 for an unknown parent.';

CREATE FUNCTION authx.role_set_parent(name text, parent text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r authx.roles := authx._role_require(role_set_parent.name);
BEGIN
    IF role_set_parent.parent IS NOT NULL THEN
        PERFORM authx._role_require(role_set_parent.parent);
    END IF;
    -- Hierarchy changes take one lock, so two of them cannot together make
    -- a cycle that neither sees.
    LOCK TABLE authx.roles IN SHARE ROW EXCLUSIVE MODE;
    UPDATE authx.roles ro SET parent = role_set_parent.parent WHERE ro.name = role_set_parent.name;
    PERFORM authx._audit_tx('role.parent_changed', 'medium', NULL,
                            jsonb_build_object('role', r.name, 'from', r.parent, 'to', role_set_parent.parent));
END
$$;
COMMENT ON FUNCTION authx.role_set_parent(text, text) IS
'Makes the role inherit from parent (NULL: from nothing). Raises 22023 when that would make a cycle, 42704 for an unknown role.';

CREATE FUNCTION authx.role_drop(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        authx.roles := authx._role_require(role_drop.name);
    v_child  text;
    v_users  bigint;
BEGIN
    SELECT ro.name INTO v_child FROM authx.roles ro WHERE ro.parent = r.name ORDER BY ro.name LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '2BP01',
            MESSAGE = format('role "%s" is the parent of role "%s"', r.name, v_child),
            HINT = 'Drop the child roles first, or move them with authx.role_set_parent.';
    END IF;
    SELECT count(*) INTO v_users FROM authx.user_roles ur WHERE ur.role = r.name;
    DELETE FROM authx.roles ro WHERE ro.name = r.name;
    PERFORM authx._audit_tx('role.dropped', 'medium', NULL,
                            jsonb_build_object('role', r.name, 'users', v_users));
END
$$;
COMMENT ON FUNCTION authx.role_drop(text) IS
'Drops a role with its permissions and user grants. Raises 42704 when unknown, 2BP01 while another role inherits from it.';

CREATE FUNCTION authx.role_grant(role text, permission text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_perm text;
BEGIN
    PERFORM authx._require(role_grant.permission, 'permission');
    v_perm := (authx._permissions_normalize(ARRAY[role_grant.permission], 'permission'))[1];
    PERFORM authx._role_require(role_grant.role);
    INSERT INTO authx.role_permissions (role, permission) VALUES (role_grant.role, v_perm)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('role.permission_granted', 'medium', NULL,
                            jsonb_build_object('role', role_grant.role, 'permission', v_perm));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.role_grant(text, text) IS
'Grants a permission (resource:action, * wildcards) to a role; false when it already had it. Raises 22023 for a malformed permission, 42704 for an unknown role.';

CREATE FUNCTION authx.role_revoke(role text, permission text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_perm text;
BEGIN
    PERFORM authx._require(role_revoke.permission, 'permission');
    v_perm := (authx._permissions_normalize(ARRAY[role_revoke.permission], 'permission'))[1];
    PERFORM authx._role_require(role_revoke.role);
    DELETE FROM authx.role_permissions rp WHERE rp.role = role_revoke.role AND rp.permission = v_perm;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('role.permission_revoked', 'medium', NULL,
                            jsonb_build_object('role', role_revoke.role, 'permission', v_perm));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.role_revoke(text, text) IS
'Takes a permission from a role; false when it did not have it (wildcards are not expanded: revoke exactly what was granted).';

CREATE FUNCTION authx.role_list()
RETURNS TABLE (name text, parent text, description text, permissions text[], users bigint, created_at timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.name, r.parent, r.description,
           coalesce((SELECT array_agg(rp.permission ORDER BY rp.permission)
                       FROM authx.role_permissions rp WHERE rp.role = r.name), '{}'),
           (SELECT count(*) FROM authx.user_roles ur
             WHERE ur.role = r.name AND (ur.expires_at IS NULL OR ur.expires_at > clock_timestamp())),
           r.created_at
      FROM authx.roles r ORDER BY r.name;
$$;
COMMENT ON FUNCTION authx.role_list() IS
'Lists every role with its parent, its own (not inherited) permissions and how many users hold it now.';

CREATE FUNCTION authx.user_grant(user_id uuid, role text, expires_at timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(user_grant.user_id, 'user_id');
    PERFORM authx._role_require(user_grant.role);
    IF user_grant.expires_at IS NOT NULL AND user_grant.expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'expires_at is in the past',
            HINT = 'Pass a future time, or NULL for a grant that does not expire.';
    END IF;
    PERFORM 1 FROM authx.users u WHERE u.id = user_grant.user_id AND u.deleted_at IS NULL FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('user "%s" does not exist', user_grant.user_id),
            HINT = 'Roles can only be granted to live users.';
    END IF;
    -- Granting again replaces the expiry (extends or ends a time-bound grant).
    INSERT INTO authx.user_roles AS ur (user_id, role, expires_at)
    VALUES (user_grant.user_id, user_grant.role, user_grant.expires_at)
    ON CONFLICT ON CONSTRAINT user_roles_pkey DO UPDATE SET expires_at = EXCLUDED.expires_at, granted_at = now();
    PERFORM authx._audit_tx('user.role_granted', 'medium', user_grant.user_id,
                            jsonb_build_object('role', user_grant.role, 'expires_at', user_grant.expires_at));
END
$$;
COMMENT ON FUNCTION authx.user_grant(uuid, text, timestamptz) IS
'Grants a role to a user, until expires_at if given (granting again replaces the expiry). Raises P0002 for a missing user, 42704 for an unknown role, 22023 for a past expiry.';

CREATE FUNCTION authx.user_revoke(user_id uuid, role text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(user_revoke.user_id, 'user_id');
    PERFORM authx._role_require(user_revoke.role);
    DELETE FROM authx.user_roles ur WHERE ur.user_id = user_revoke.user_id AND ur.role = user_revoke.role;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('user.role_revoked', 'medium', user_revoke.user_id,
                            jsonb_build_object('role', user_revoke.role));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.user_revoke(uuid, text) IS
'Takes a role from a user; false when the user did not hold it. Raises 42704 for an unknown role.';

CREATE FUNCTION authx.has_permission(user_id uuid, permission text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'authx_has_permission'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.has_permission(uuid, text) IS
'True when one of the user''s unexpired roles, or a role it inherits from, grants the permission or a wildcard covering it. False for unknown, disabled and deleted users. Raises 22023 for a malformed permission.';

CREATE FUNCTION authx.user_permissions(user_id uuid)
RETURNS text[]
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT r.permission ORDER BY r.permission), '{}')
      FROM authx._rbac_resolve(user_permissions.user_id, clock_timestamp()) r;
$$;
COMMENT ON FUNCTION authx.user_permissions(uuid) IS
'Returns the user''s effective permissions now (own roles and inherited), sorted; empty for unknown, disabled and deleted users.';

CREATE FUNCTION authx.user_roles(user_id uuid)
RETURNS TABLE (role text, granted_at timestamptz, expires_at timestamptz, inherited_from text)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE r (role, granted_at, expires_at, via, depth) AS (
        SELECT ur.role, ur.granted_at, ur.expires_at, NULL::text COLLATE "C", 1
          FROM authx.user_roles ur
         WHERE ur.user_id = user_roles.user_id
           AND (ur.expires_at IS NULL OR ur.expires_at > clock_timestamp())
        UNION
        SELECT ro.parent, r.granted_at, r.expires_at, coalesce(r.via, r.role), r.depth + 1
          FROM r JOIN authx.roles ro ON ro.name = r.role
         WHERE ro.parent IS NOT NULL AND r.depth < 64
    )
    SELECT DISTINCT ON (r.role) r.role, r.granted_at, r.expires_at, r.via
      FROM r ORDER BY r.role, r.via IS NOT NULL, r.expires_at DESC NULLS FIRST, r.via;
$$;
COMMENT ON FUNCTION authx.user_roles(uuid) IS
'Lists the roles a user holds now: direct grants (inherited_from NULL) and the roles they inherit, each once, with the grant''s expiry.';

-- Housekeeping called by maintenance_run: expired grants.
CREATE FUNCTION authx._rbac_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    DELETE FROM authx.user_roles ur WHERE ur.expires_at <= p_now;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN jsonb_build_object('grants_expired', v_n);
END
$$;
COMMENT ON FUNCTION authx._rbac_purge(timestamptz) IS 'Internal. Deletes role grants that have expired (they stopped counting already).';
