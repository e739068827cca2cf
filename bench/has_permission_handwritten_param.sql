WITH RECURSIVE r (role) AS (
    SELECT ur.role FROM bench.user_roles ur
     WHERE ur.user_id = :uid AND (ur.expires_at IS NULL OR ur.expires_at > now())
    UNION
    SELECT ro.parent FROM r JOIN bench.roles ro ON ro.name = r.role WHERE ro.parent IS NOT NULL)
SELECT EXISTS (SELECT 1 FROM r JOIN bench.role_permissions rp ON rp.role = r.role
                WHERE rp.permission IN (:perm, :rwild, :awild, :allwild));
