-- ================================================================
-- IP blocking (src/ipblock.c)
-- ================================================================

CREATE TABLE authx.ip_blocks (
    net        cidr NOT NULL,
    allow      boolean NOT NULL DEFAULT false,
    until      timestamptz,
    reason     text,
    source     text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'auto')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (net, allow)
);
COMMENT ON TABLE authx.ip_blocks IS
'Blocked networks (allow false) and the allowlist (allow true), which wins over any block. A block with until ends by itself at that instant; maintenance deletes it later.';
SELECT pg_catalog.pg_extension_config_dump('authx.ip_blocks', '');

-- Any change tells every backend, at commit, to reload the shared copy.
CREATE FUNCTION authx._ip_blocks_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_ip_blocks_changed'
LANGUAGE C;
COMMENT ON FUNCTION authx._ip_blocks_changed() IS
'Internal. Trigger: the shared-memory copy of authx.ip_blocks is reloaded after the transaction commits.';

CREATE TRIGGER ip_blocks_changed AFTER INSERT OR UPDATE OR DELETE ON authx.ip_blocks
FOR EACH ROW EXECUTE FUNCTION authx._ip_blocks_changed();
CREATE TRIGGER ip_blocks_truncated AFTER TRUNCATE ON authx.ip_blocks
FOR EACH STATEMENT EXECUTE FUNCTION authx._ip_blocks_changed();

CREATE FUNCTION authx.ip_blocked(ip inet)
RETURNS boolean
AS 'MODULE_PATHNAME', 'authx_ip_blocked'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.ip_blocked(inet) IS
'True when a live block covers the address and no allowlist entry does (IPv4 and IPv6; an IPv4-mapped IPv6 address counts as IPv4). Answers from shared memory.';

-- Internal: the live entries, for the shared-memory copy.
CREATE FUNCTION authx._ip_blocks_live(p_now timestamptz)
RETURNS TABLE (net cidr, allow boolean, until timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.net, b.allow, b.until FROM authx.ip_blocks b
     WHERE b.until IS NULL OR b.until > p_now;
$$;
COMMENT ON FUNCTION authx._ip_blocks_live(timestamptz) IS 'Internal. Returns the blocks and allowlist entries in force at p_now.';

CREATE FUNCTION authx.ip_block(net cidr, duration interval DEFAULT NULL, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_until timestamptz;
BEGIN
    PERFORM authx._require(ip_block.net, 'net');
    IF duration IS NOT NULL AND duration <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'duration must be positive',
            HINT = 'Pass how long the block lasts, e.g. ''1 hour'', or NULL until it is lifted.';
    END IF;
    v_until := clock_timestamp() + duration;
    -- Blocking again replaces the end and the reason.
    INSERT INTO authx.ip_blocks AS b (net, allow, until, reason)
    VALUES (ip_block.net, false, v_until, left(ip_block.reason, 500))
    ON CONFLICT ON CONSTRAINT ip_blocks_pkey DO UPDATE
       SET until = EXCLUDED.until, reason = EXCLUDED.reason, source = 'manual', created_at = now();
    PERFORM authx._audit_tx('ip.blocked', 'high', NULL,
                            jsonb_build_object('net', ip_block.net::text, 'until', v_until, 'reason', ip_block.reason));
END
$$;
COMMENT ON FUNCTION authx.ip_block(cidr, interval, text) IS
'Blocks a network (an address is a /32 or /128) for duration, or until ip_unblock when NULL; blocking again replaces the end (admin). Raises 22023 for a non-positive duration.';

CREATE FUNCTION authx.ip_unblock(net cidr)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(ip_unblock.net, 'net');
    DELETE FROM authx.ip_blocks b WHERE b.net = ip_unblock.net AND NOT b.allow;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('ip.unblocked', 'medium', NULL, jsonb_build_object('net', ip_unblock.net::text));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.ip_unblock(cidr) IS
'Lifts the block of exactly this network (admin); false when there was none. A wider or narrower block stays.';

CREATE FUNCTION authx.ip_allow(net cidr, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(ip_allow.net, 'net');
    INSERT INTO authx.ip_blocks AS b (net, allow, reason)
    VALUES (ip_allow.net, true, left(ip_allow.reason, 500))
    ON CONFLICT ON CONSTRAINT ip_blocks_pkey DO UPDATE SET reason = EXCLUDED.reason, created_at = now();
    PERFORM authx._audit_tx('ip.allowed', 'medium', NULL,
                            jsonb_build_object('net', ip_allow.net::text, 'reason', ip_allow.reason));
END
$$;
COMMENT ON FUNCTION authx.ip_allow(cidr, text) IS
'Puts a network on the allowlist, which wins over every block (admin): your offices, monitoring, partners.';

CREATE FUNCTION authx.ip_disallow(net cidr)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(ip_disallow.net, 'net');
    DELETE FROM authx.ip_blocks b WHERE b.net = ip_disallow.net AND b.allow;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('ip.disallowed', 'medium', NULL, jsonb_build_object('net', ip_disallow.net::text));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.ip_disallow(cidr) IS 'Takes a network off the allowlist (admin); false when it was not on it.';

CREATE FUNCTION authx.ip_blocks()
RETURNS TABLE (net cidr, allow boolean, until timestamptz, reason text, source text, created_at timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.net, b.allow, b.until, b.reason, b.source, b.created_at
      FROM authx.ip_blocks b
     WHERE b.until IS NULL OR b.until > clock_timestamp()
     ORDER BY b.allow DESC, b.net;
$$;
COMMENT ON FUNCTION authx.ip_blocks() IS 'Lists the allowlist and the blocks in force (admin).';

-- Housekeeping called by maintenance_run: blocks past their end.
CREATE FUNCTION authx._ipblock_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    DELETE FROM authx.ip_blocks b WHERE b.until <= p_now;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN jsonb_build_object('blocks_expired', v_n);
END
$$;
COMMENT ON FUNCTION authx._ipblock_purge(timestamptz) IS 'Internal. Deletes blocks that have ended (they stopped counting already).';

-- Internal: the same answer as ip_blocked, from the table (used when the
-- shared-memory copy is unavailable, too small, or must not be trusted: our
-- own uncommitted changes, a REPEATABLE READ snapshot).  Like the C lookup,
-- the address's netmask is ignored and an IPv4 address matches networks
-- written in either form (10.0.0.0/8 and ::ffff:10.0.0.0/104).
CREATE FUNCTION authx._ip_blocked_sql(p_ip inet, p_now timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH h AS (SELECT set_masklen(p_ip, CASE family(p_ip) WHEN 4 THEN 32 ELSE 128 END) AS ip),
         v4 AS (SELECT CASE WHEN family(h.ip) = 4 THEN h.ip
                            WHEN h.ip <<= inet '::ffff:0.0.0.0/96' THEN inet '0.0.0.0' + (h.ip - inet '::ffff:0.0.0.0')
                       END AS ip FROM h),
         forms AS (SELECT h.ip FROM h
                   UNION SELECT v4.ip FROM v4 WHERE v4.ip IS NOT NULL
                   UNION SELECT inet '::ffff:0.0.0.0' + (v4.ip - inet '0.0.0.0') FROM v4 WHERE v4.ip IS NOT NULL),
         hits AS (SELECT b.allow FROM authx.ip_blocks b JOIN forms f ON b.net >>= f.ip
                   WHERE b.until IS NULL OR b.until > p_now)
    SELECT NOT EXISTS (SELECT 1 FROM hits WHERE hits.allow)
       AND EXISTS (SELECT 1 FROM hits WHERE NOT hits.allow);
$$;
COMMENT ON FUNCTION authx._ip_blocked_sql(inet, timestamptz) IS 'Internal. ip_blocked computed from the table.';
