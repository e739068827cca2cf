-- ================================================================
-- Threat detection, alerts and the security summary (src/policy.c)
-- ================================================================

CREATE TABLE authx.threat_rules (
    name        text COLLATE "C" PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    event_type  text NOT NULL CHECK (event_type ~ '^[a-z0-9_.:-]{1,64}$'),
    distinct_by text CHECK (distinct_by ~ '^[a-z_][a-z0-9_]{0,62}$'),
    threshold   integer NOT NULL CHECK (threshold BETWEEN 1 AND 1000000),
    within      interval NOT NULL CHECK (extract(epoch FROM within) BETWEEN 1 AND 31622400),
    block_for   interval CHECK (extract(epoch FROM block_for) BETWEEN 1 AND 31622400),
    enabled     boolean NOT NULL DEFAULT true,
    description text,
    seeded      boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE authx.threat_rules IS
'When events of event_type with an address come faster than threshold per within (counting, with distinct_by, only values new for the address: user_id or a key of the details), the address (IPv4, or the IPv6 /64) is blocked for block_for (NULL: until unblocked), audited as threat.auto_block (high) and alerted.';
INSERT INTO authx.threat_rules (name, event_type, distinct_by, threshold, within, block_for, description, seeded) VALUES
    ('login_bruteforce', 'login.failed', NULL, 20, '5 minutes', '1 hour',
     'Many failed logins from one address.', true),
    ('credential_stuffing', 'login.failed', 'account', 10, '10 minutes', '1 day',
     'Failed logins for many different accounts from one address.', true),
    ('refresh_reuse', 'token.refresh_reused', NULL, 1, '1 hour', '1 hour',
     'A refresh token used twice: stolen, or replayed.', true),
    ('apikey_bruteforce', 'apikey.not_found', NULL, 50, '5 minutes', '1 hour',
     'Many unknown API keys from one address (apikey_verify with ip).', true);
SELECT pg_catalog.pg_extension_config_dump('authx.threat_rules', 'WHERE NOT seeded');

CREATE TRIGGER threat_rules_unseed BEFORE UPDATE ON authx.threat_rules
FOR EACH ROW WHEN (OLD.seeded) EXECUTE FUNCTION authx._unseed();

-- A restore of an edited seed rule: written over the seed CREATE EXTENSION made.
CREATE FUNCTION authx._threat_rule_merge_seed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE authx.threat_rules r
       SET event_type = NEW.event_type, distinct_by = NEW.distinct_by, threshold = NEW.threshold,
           within = NEW.within, block_for = NEW.block_for, enabled = NEW.enabled,
           description = coalesce(NEW.description, r.description), seeded = false
     WHERE r.name = NEW.name AND r.seeded;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION authx._threat_rule_merge_seed() IS
'Internal. Trigger: a non-seed row named like a seed rule is written over the seed (a restore of an edited seed).';

CREATE TRIGGER threat_rules_merge_seed BEFORE INSERT ON authx.threat_rules
FOR EACH ROW WHEN (NOT NEW.seeded) EXECUTE FUNCTION authx._threat_rule_merge_seed();
CREATE TRIGGER threat_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON authx.threat_rules FOR EACH STATEMENT EXECUTE FUNCTION authx._policy_changed();

-- The network an address is counted and blocked by.
CREATE FUNCTION authx._ip_key(ip inet)
RETURNS cidr
AS 'MODULE_PATHNAME', 'authx_ip_key_sql'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._ip_key(inet) IS
'Internal. The network rate limits and threat rules count an address by: an IPv4 address (IPv4-mapped too) as /32, an IPv6 address as its /64.';

CREATE FUNCTION authx.threat_rule_set(name text, event_type text, threshold integer, within interval,
                                      block_for interval DEFAULT '1 hour', distinct_by text DEFAULT NULL,
                                      enabled boolean DEFAULT true, description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(threat_rule_set.name, 'name');
    PERFORM authx._require(threat_rule_set.event_type, 'event_type');
    PERFORM authx._require(threat_rule_set.threshold, 'threshold');
    PERFORM authx._require(threat_rule_set.within, 'within');
    PERFORM authx._require(threat_rule_set.enabled, 'enabled');
    IF threat_rule_set.name !~ '^[a-z][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid rule name "%s"', threat_rule_set.name),
            HINT = 'A rule name starts with a lowercase letter and has at most 63 of a-z, 0-9, _ . -';
    END IF;
    IF threat_rule_set.event_type !~ '^[a-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid event type "%s"', threat_rule_set.event_type),
            HINT = 'Name an audit event type such as login.failed.';
    END IF;
    IF threat_rule_set.distinct_by !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid distinct_by "%s"', threat_rule_set.distinct_by),
            HINT = 'distinct_by is user_id or a key of the events'' details, such as account; NULL counts every event.';
    END IF;
    IF threat_rule_set.threshold NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'threshold must be between 1 and 1000000',
            HINT = 'Pass how many events within the window make an attack.';
    END IF;
    IF extract(epoch FROM threat_rule_set.within) NOT BETWEEN 1 AND 31622400 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'within must be between 1 second and 366 days',
            HINT = 'Pass a window such as ''5 minutes''.';
    END IF;
    IF extract(epoch FROM threat_rule_set.block_for) NOT BETWEEN 1 AND 31622400 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'block_for must be between 1 second and 366 days',
            HINT = 'Pass how long to block, or NULL to block until authx.ip_unblock.';
    END IF;
    INSERT INTO authx.threat_rules AS r (name, event_type, distinct_by, threshold, within, block_for, enabled,
                                         description)
    VALUES (threat_rule_set.name, threat_rule_set.event_type, threat_rule_set.distinct_by, threat_rule_set.threshold,
            threat_rule_set.within, threat_rule_set.block_for, threat_rule_set.enabled, threat_rule_set.description)
    ON CONFLICT ON CONSTRAINT threat_rules_pkey DO UPDATE
       SET event_type = EXCLUDED.event_type, distinct_by = EXCLUDED.distinct_by, threshold = EXCLUDED.threshold,
           within = EXCLUDED.within, block_for = EXCLUDED.block_for, enabled = EXCLUDED.enabled,
           description = coalesce(EXCLUDED.description, r.description);
    PERFORM authx._audit_tx('threat.rule_set', 'medium', NULL,
                            jsonb_build_object('rule', threat_rule_set.name, 'event_type', threat_rule_set.event_type,
                                               'threshold', threat_rule_set.threshold,
                                               'within_s', extract(epoch FROM threat_rule_set.within),
                                               'block_for_s', extract(epoch FROM threat_rule_set.block_for),
                                               'distinct_by', threat_rule_set.distinct_by,
                                               'enabled', threat_rule_set.enabled));
END
$$;
COMMENT ON FUNCTION authx.threat_rule_set(text, text, integer, interval, interval, text, boolean, text) IS
'Creates or changes a threat rule (admin): block an address for block_for (NULL: until unblocked) when its event_type events come faster than threshold per within (with distinct_by: distinct values of user_id or a details key). Raises 22023 for bad values, 22004 for NULL required ones.';

CREATE FUNCTION authx.threat_rule_drop(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(threat_rule_drop.name, 'name');
    DELETE FROM authx.threat_rules r WHERE r.name = threat_rule_drop.name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('threat.rule_dropped', 'medium', NULL, jsonb_build_object('rule', threat_rule_drop.name));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.threat_rule_drop(text) IS
'Deletes a threat rule (admin; a seed rule comes back only with the extension: disable it with threat_rule_set(..., enabled => false) instead); false when there was none.';

-- Called by the maintenance worker for each address a rule fired for:
-- p_net is the network counted (IPv4 /32, IPv6 /64), p_ip the address the
-- events came from.
CREATE FUNCTION authx._threat_block(p_net inet, p_rule text, p_ip inet)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       authx.threat_rules;
    v_net   cidr := p_net::cidr;
    v_until timestamptz;
BEGIN
    SELECT * INTO r FROM authx.threat_rules t WHERE t.name = p_rule AND t.enabled;
    IF NOT FOUND THEN
        RETURN false;               -- dropped or disabled since it fired
    END IF;
    -- The allowlist wins: an allowlisted source is reported, not blocked
    -- (its /64 neighbours stay allowed by their own entries if they have any).
    IF EXISTS (SELECT 1 FROM authx.ip_blocks b
                WHERE b.allow AND (b.until IS NULL OR b.until > now())
                  AND (b.net >>= p_ip OR b.net >>= v_net
                       OR (family(p_ip) = 4 AND b.net >>= ('::ffff:' || host(p_ip))::inet))) THEN
        PERFORM authx.audit('threat.detected', 'medium', NULL, p_ip,
                            jsonb_build_object('rule', r.name, 'event_type', r.event_type, 'net', v_net::text,
                                               'allowlisted', true));
        RETURN false;
    END IF;
    v_until := now() + r.block_for;
    INSERT INTO authx.ip_blocks AS b (net, allow, until, reason, source)
    VALUES (v_net, false, v_until, format('threat rule %s', r.name), 'auto')
    ON CONFLICT ON CONSTRAINT ip_blocks_pkey DO UPDATE
       SET until = CASE WHEN b.until IS NULL OR EXCLUDED.until IS NULL THEN NULL
                        ELSE greatest(b.until, EXCLUDED.until) END,
           reason = CASE WHEN b.until IS NOT NULL AND b.until <= now() THEN EXCLUDED.reason ELSE b.reason END,
           source = CASE WHEN b.until IS NOT NULL AND b.until <= now() THEN EXCLUDED.source ELSE b.source END;
    PERFORM authx.audit('threat.auto_block', 'high', NULL, p_ip,
                        jsonb_build_object('rule', r.name, 'event_type', r.event_type, 'threshold', r.threshold,
                                           'within_s', extract(epoch FROM r.within), 'net', v_net::text,
                                           'until', v_until));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx._threat_block(inet, text, inet) IS
'Internal. Blocks the network a threat rule fired for (unless the source is allowlisted) and audits threat.auto_block; the maintenance worker calls it.';

CREATE FUNCTION authx.security_summary(since interval DEFAULT '24 hours')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_from timestamptz;
BEGIN
    PERFORM authx._require(security_summary.since, 'since');
    IF security_summary.since <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'since must be positive',
            HINT = 'Pass how far back to look, such as ''24 hours''.';
    END IF;
    v_from := now() - security_summary.since;
    RETURN (
        WITH ev AS (
            SELECT a.event_type, a.severity, a.ip FROM authx.audit_log a WHERE a.at >= v_from
        ), offenders AS (
            SELECT ev.ip, count(*) AS events,
                   count(*) FILTER (WHERE ev.event_type = 'login.failed') AS failed_logins
              FROM ev WHERE ev.ip IS NOT NULL AND ev.severity >= 'low'
             GROUP BY ev.ip ORDER BY events DESC, ev.ip LIMIT 10
        ), blocks AS (
            SELECT b.net, b.until, b.reason, b.source, b.created_at FROM authx.ip_blocks b
             WHERE NOT b.allow AND (b.until IS NULL OR b.until > now())
        )
        SELECT jsonb_build_object(
            'since', v_from,
            'until', now(),
            'events', (SELECT count(*) FROM ev),
            'by_severity', (SELECT coalesce(jsonb_object_agg(s.severity, s.n), '{}')
                              FROM (SELECT ev.severity::text AS severity, count(*) AS n FROM ev GROUP BY 1) s),
            'by_type', (SELECT coalesce(jsonb_agg(jsonb_build_object('event_type', t.event_type, 'severity', t.severity,
                                                                     'count', t.n) ORDER BY t.n DESC, t.event_type, t.severity), '[]')
                          FROM (SELECT ev.event_type, ev.severity::text AS severity, count(*) AS n
                                  FROM ev GROUP BY 1, 2) t),
            'top_ips', (SELECT coalesce(jsonb_agg(jsonb_build_object('ip', abbrev(o.ip), 'events', o.events,
                                                                     'failed_logins', o.failed_logins,
                                                                     'blocked', authx.ip_blocked(o.ip))
                                                  ORDER BY o.events DESC, o.ip), '[]') FROM offenders o),
            'auto_blocks', (SELECT count(*) FROM ev WHERE ev.event_type = 'threat.auto_block'),
            'lockouts', (SELECT count(*) FROM ev WHERE ev.event_type = 'login.lockout'),
            'locked_accounts', (SELECT count(DISTINCT l.user_id) FROM authx.lockouts l WHERE l.locked_until > now()),
            'active_blocks', (SELECT count(*) FROM blocks),
            'blocks', (SELECT coalesce(jsonb_agg(jsonb_build_object('net', x.net::text, 'until', x.until,
                                                                    'reason', x.reason, 'source', x.source)
                                                 ORDER BY x.created_at DESC, x.net), '[]')
                         FROM (SELECT * FROM blocks ORDER BY blocks.created_at DESC, blocks.net LIMIT 100) x)));
END
$$;
COMMENT ON FUNCTION authx.security_summary(interval) IS
'Security overview of the last since (admin): events by severity and by type, the 10 addresses with the most events of severity low or above, auto-blocks, lockouts, accounts locked now, and active blocks (the 100 newest). Raises 22023 for a non-positive since.';
