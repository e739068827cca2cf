-- ================================================================
-- authx install script, assembled by make from src/sql/NN_*.sql.
-- One section per module; objects are schema-qualified throughout.
-- ================================================================
\echo Use "CREATE EXTENSION authx" to load this file. \quit

-- The two roles every grant below is written for.  Roles are cluster-wide
-- and outlive the extension, so create them only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authx_app') THEN
        CREATE ROLE authx_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authx_admin') THEN
        CREATE ROLE authx_admin NOLOGIN;
    END IF;
END
$$;

REVOKE ALL ON SCHEMA authx FROM PUBLIC;
GRANT USAGE ON SCHEMA authx TO authx_app, authx_admin;

-- Audit severities, ordered so that "severity >= 'high'" works.
CREATE TYPE authx.severity AS ENUM ('info', 'low', 'medium', 'high', 'critical');
