-- ================================================================
-- Audit log: daily range partitions, a DEFAULT partition so no event is
-- ever refused, and the queue functions (src/audit.c).
-- ================================================================

CREATE SEQUENCE authx.audit_log_id_seq;

CREATE TABLE authx.audit_log (
    id          bigint NOT NULL DEFAULT pg_catalog.nextval('authx.audit_log_id_seq'),
    at          timestamptz NOT NULL,
    event_type  text NOT NULL,
    severity    authx.severity NOT NULL,
    user_id     uuid,
    ip          inet,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE authx.audit_log_id_seq OWNED BY authx.audit_log.id;
CREATE INDEX audit_log_at_idx ON authx.audit_log (at);
CREATE INDEX audit_log_user_idx ON authx.audit_log (user_id, at) WHERE user_id IS NOT NULL;
CREATE TABLE authx.audit_log_default PARTITION OF authx.audit_log DEFAULT;
COMMENT ON TABLE authx.audit_log IS
'Security events, partitioned by day (UTC); partitions are made ahead and retired by the maintenance worker.';

-- pg_dump keeps the events of the member partition; later partitions are
-- ordinary tables and are dumped anyway.
SELECT pg_catalog.pg_extension_config_dump('authx.audit_log_default', '');
SELECT pg_catalog.pg_extension_config_dump('authx.audit_log_id_seq', '');

CREATE FUNCTION authx.audit(event_type text, severity text, user_id uuid DEFAULT NULL,
                            ip inet DEFAULT NULL, details jsonb DEFAULT '{}',
                            user_agent text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'authx_audit'
LANGUAGE C VOLATILE PARALLEL RESTRICTED
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION authx.audit(text, text, uuid, inet, jsonb, text) IS
'Records a security event that survives the caller''s ROLLBACK (queued in shared memory, written by the maintenance worker). Falls back to a synchronous insert when the queue is full or authx is not preloaded.';

CREATE FUNCTION authx.audit_flush(timeout interval DEFAULT '30 seconds')
RETURNS void
AS 'MODULE_PATHNAME', 'authx_audit_flush'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.audit_flush(interval) IS
'Waits until every event queued before the call is in authx.audit_log; raises 55000 after the timeout.';

-- The payload of NOTIFY authx_alerts: the event as JSON, details dropped if
-- it would not fit (NOTIFY takes under 8000 bytes).
CREATE FUNCTION authx._alert(p_at timestamptz, p_type text, p_severity text, p_user uuid, p_ip inet,
                             p_user_agent text, p_details jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_payload text;
BEGIN
    v_payload := jsonb_build_object('at', p_at, 'event_type', p_type, 'severity', p_severity,
                                    'user_id', p_user, 'ip', abbrev(p_ip), 'details', p_details)::text;
    IF octet_length(v_payload) > 7900 THEN
        v_payload := jsonb_build_object('at', p_at, 'event_type', p_type, 'severity', p_severity,
                                        'user_id', p_user, 'ip', abbrev(p_ip),
                                        'details', jsonb_build_object('truncated', true))::text;
    END IF;
    PERFORM pg_notify('authx_alerts', v_payload);
END
$$;
COMMENT ON FUNCTION authx._alert(timestamptz, text, text, uuid, inet, text, jsonb) IS
'Internal. NOTIFY authx_alerts with an audit event as JSON, for events at or above authx.alert_min_severity: the maintenance worker as it writes queued events, authx._audit_tx for transactional ones (sent when they commit).';

-- Internal: a transactional event, for state changes (an account created in
-- a transaction that rolls back must not leave a "user.created" behind).
CREATE FUNCTION authx._audit_tx(p_event_type text, p_severity authx.severity,
                                p_user_id uuid, p_details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO authx.audit_log (at, event_type, severity, user_id, details)
    VALUES (pg_catalog.clock_timestamp(), p_event_type, p_severity, p_user_id, p_details);
    -- An alert, sent if and when the transaction commits, like the event.
    SELECT authx._alert(pg_catalog.clock_timestamp(), p_event_type, p_severity::text, p_user_id, NULL, NULL, p_details)
     WHERE CASE coalesce(pg_catalog.current_setting('authx.alert_min_severity', true), 'high')
           WHEN 'off' THEN false
           ELSE p_severity >= coalesce(pg_catalog.current_setting('authx.alert_min_severity', true), 'high')::authx.severity
           END;
$$;
COMMENT ON FUNCTION authx._audit_tx(text, authx.severity, uuid, jsonb) IS
'Internal. Inserts an event in the caller''s transaction: it exists exactly when the change it describes committed; alerts on authx_alerts like queued events.';

-- ----------------------------------------------------------------
-- Partition maintenance, generic over any table partitioned by day on a
-- column "at" with a DEFAULT partition named <table>_default.
-- ----------------------------------------------------------------
-- lock_timeout: attaching a partition needs an ACCESS EXCLUSIVE lock on the
-- default partition.  Waiting behind a long reader would also queue every
-- insert into audit_log behind us, so give up after a second and let the
-- next pass retry (partitions are made days ahead, so a miss is harmless).
CREATE FUNCTION authx._partitions_maintain(p_parent regclass, p_premake integer,
                                           p_retention integer, p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '1s'
AS $$
DECLARE
    v_schema  text;
    v_table   text;
    v_default text;
    v_today   date := (p_now AT TIME ZONE 'UTC')::date;
    v_cutoff  date;
    v_day     date;
    v_name    text;
    v_lo      timestamptz;
    v_hi      timestamptz;
    v_n       bigint;
    v_created integer := 0;
    v_dropped integer := 0;
    v_moved   bigint := 0;
    v_purged  bigint := 0;
    v_locked  boolean := false;
    r         record;
BEGIN
    -- One maintainer at a time per table (the worker, or a manual call).
    PERFORM pg_advisory_xact_lock(hashtext('authx._partitions_maintain'), p_parent::oid::integer);

    SELECT n.nspname, c.relname INTO v_schema, v_table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_parent;
    v_default := format('%I.%I', v_schema, v_table || '_default');
    IF p_retention > 0 THEN
        v_cutoff := v_today - p_retention;
    END IF;

    -- Before any partition DDL the parent is locked against inserts (SHARE
    -- ROW EXCLUSIVE conflicts with their ROW EXCLUSIVE).  Otherwise an insert
    -- that routed its row with the old partition map (to the default) and
    -- then waited on the default partition would fail the default's new
    -- constraint once the new partition is attached.  Readers are not
    -- blocked.  The lock is taken only when there is DDL to do.

    -- 1. Retire whole days older than the retention: detach + drop, never
    --    a big DELETE.  Stragglers in the default partition are deleted.
    IF v_cutoff IS NOT NULL THEN
        FOR r IN
            SELECT c.relname,
                   to_date(right(c.relname, 8), 'YYYYMMDD') AS day
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = p_parent
               AND c.relname ~ ('^' || v_table || '_p[0-9]{8}$')
        LOOP
            CONTINUE WHEN r.day >= v_cutoff;
            IF NOT v_locked THEN
                EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', p_parent);
                v_locked := true;
            END IF;
            EXECUTE format('ALTER TABLE %s DETACH PARTITION %I.%I', p_parent, v_schema, r.relname);
            EXECUTE format('DROP TABLE %I.%I', v_schema, r.relname);
            v_dropped := v_dropped + 1;
        END LOOP;
        EXECUTE format('DELETE FROM %s WHERE at < $1', v_default)
          USING v_cutoff::timestamp AT TIME ZONE 'UTC';
        GET DIAGNOSTICS v_purged = ROW_COUNT;
    END IF;

    -- 2. Make a partition for every day waiting in the default partition
    --    and every day of the premake window, moving the waiting rows in.
    --    The parent lock keeps new rows for the day out of the default
    --    between the move and the attach.
    FOR v_day IN EXECUTE format(
        'SELECT d FROM (SELECT DISTINCT (at AT TIME ZONE ''UTC'')::date AS d FROM %s'
        '               UNION SELECT generate_series($1, $1 + $2, interval ''1 day'')::date) s'
        ' ORDER BY d', v_default) USING v_today, p_premake
    LOOP
        v_name := v_table || '_p' || to_char(v_day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('%I.%I', v_schema, v_name)) IS NOT NULL;
        v_lo := v_day::timestamp AT TIME ZONE 'UTC';
        v_hi := (v_day + 1)::timestamp AT TIME ZONE 'UTC';
        IF NOT v_locked THEN
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', p_parent);
            v_locked := true;
        END IF;
        EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       v_schema, v_name, p_parent);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE at >= $1 AND at < $2 RETURNING *)'
                       ' INSERT INTO %I.%I SELECT * FROM moved', v_default, v_schema, v_name)
          USING v_lo, v_hi;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_moved := v_moved + v_n;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                       p_parent, v_schema, v_name, v_lo, v_hi);
        v_created := v_created + 1;
    END LOOP;

    RETURN jsonb_build_object('created', v_created, 'dropped', v_dropped,
                              'moved', v_moved, 'purged', v_purged);
END
$$;
COMMENT ON FUNCTION authx._partitions_maintain(regclass, integer, integer, timestamptz) IS
'Internal. Creates daily partitions p_premake days ahead (and for days waiting in the default partition, moving their rows in), drops partitions older than p_retention days; returns counts.';

-- Internal, superuser only: a maintenance pass as of any time, for tests.
-- Administrators get maintenance_run(), which always uses the real clock:
-- a pass "in the future" would drop the whole audit trail.
CREATE FUNCTION authx._maintenance_run_at(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object(
        'audit_log', authx._partitions_maintain(
            'authx.audit_log',
            coalesce(nullif(current_setting('authx.audit_premake', true), ''), '3')::integer,
            coalesce(nullif(current_setting('authx.audit_retention', true), ''), '90')::integer,
            p_now),
        'sessions', authx._sessions_purge(p_now),
        'api_keys', authx._apikeys_purge(p_now),
        'roles', authx._rbac_purge(p_now),
        'rate_limits', authx._ratelimit_purge(p_now),
        'ip_blocks', authx._ipblock_purge(p_now),
        'mfa', authx._mfa_purge(p_now),
        'tokens', authx._tokens_purge(p_now),
        'devices', authx._devices_purge(p_now),
        'user_tokens', authx._user_tokens_purge(p_now),
        'usage_log', authx._partitions_maintain(
            'authx.usage_log',
            coalesce(nullif(current_setting('authx.audit_premake', true), ''), '3')::integer,
            coalesce(nullif(current_setting('authx.usage_retention', true), ''), '30')::integer,
            p_now),
        'usage', authx._usage_purge(p_now),
        'cluster', authx._cluster_repair());
END
$$;
COMMENT ON FUNCTION authx._maintenance_run_at(timestamptz) IS
'Internal. One maintenance pass as of p_now (tests pass a future time). Returns what each part did.';

CREATE FUNCTION authx.maintenance_run()
RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT authx._maintenance_run_at(now()) $$;
COMMENT ON FUNCTION authx.maintenance_run() IS
'Runs one maintenance pass now, as the worker does every authx.maintenance_naptime: audit partitions made ahead and retired; expired sessions, idle lockout rows, expired role grants, rate-limit overrides and IP blocks, long-dead API keys, old key usage, ended MFA challenges, revoked refresh families, signing keys no token needs, ended trusted devices and verification/reset tokens deleted; usage_log partitions made ahead and retired (authx.usage_retention), usage rollups older than 400 days deleted, each finished hour of the last week cut to its 100 busiest addresses, daily address rollups kept; on a scale-out coordinator the email directory repair pass (cluster; null elsewhere). Returns what each part did.';

-- Partitions of the audit log as the worker sees them.
CREATE VIEW authx.audit_partitions AS
SELECT c.relname AS partition,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bounds,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'authx.audit_log'::regclass
 ORDER BY c.relname;
COMMENT ON VIEW authx.audit_partitions IS 'One row per audit_log partition, with its bounds and size.';
