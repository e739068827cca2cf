-- ================================================================
-- Dynamic settings (src/settings.c) and threshold alerts
-- ================================================================

-- What may be set: one row per documented setting, shipped with the
-- extension (not dumped: a new version brings its own list).
CREATE TABLE authx.setting_defs (
    name          text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('number', 'integer', 'boolean')),
    default_value jsonb NOT NULL,
    min_value     double precision,
    max_value     double precision,
    nullable      boolean NOT NULL DEFAULT false,
    description   text NOT NULL
);
COMMENT ON TABLE authx.setting_defs IS
'The settings authx.setting_set accepts: kind, default, bounds, whether JSON null (off) is allowed. Shipped with the extension.';

INSERT INTO authx.setting_defs (name, kind, default_value, min_value, max_value, nullable, description) VALUES
('alert.enabled', 'boolean', 'true', NULL, NULL, false,
 'Threshold alerts on (true) or off (false).'),
('alert.queue_fill', 'number', '0.8', 0, 1, true,
 'Alert when the audit, usage or cache queue is at least this full (fraction).'),
('alert.cache_lag_ms', 'number', '100', 0, 3600000, true,
 'Alert when the Redis writer lag p99 (commit to applied) reaches this many milliseconds.'),
('alert.redis_down_seconds', 'integer', '30', 0, 86400, true,
 'Alert when authx.redis_url is set and the writer has been disconnected this many seconds.'),
('alert.error_rate', 'number', '0.05', 0, 1, true,
 'Alert when the share of 4xx and 5xx answers recorded by usage_record over alert.window_seconds reaches this.'),
('alert.error_rate_min_requests', 'integer', '100', 1, 1e9, false,
 'Fewest requests in the window for alert.error_rate to be judged.'),
('alert.cache_hit_rate', 'number', '0.5', 0, 1, true,
 'Alert when the share of gateway lookups that Redis answered over alert.window_seconds falls below this.'),
('alert.cache_min_lookups', 'integer', '100', 1, 1e9, false,
 'Fewest gateway lookups in the window for alert.cache_hit_rate to be judged.'),
('alert.auto_blocks_per_hour', 'integer', '10', 1, 1e9, true,
 'Alert when threat rules blocked this many addresses within the last hour.'),
('alert.window_seconds', 'integer', '300', 10, 86400, false,
 'The window of the rate alerts (error rate, cache hit rate).'),
('alert.hysteresis', 'number', '0.1', 0, 0.9, false,
 'A raised alert clears once its value is back past the threshold by this fraction of it.');

CREATE TABLE authx.settings (
    name       text PRIMARY KEY REFERENCES authx.setting_defs (name),
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT session_user
);
COMMENT ON TABLE authx.settings IS
'Settings changed from their defaults by authx.setting_set (dumped with the database); read them with authx.setting_get or authx.setting_list.';
SELECT pg_catalog.pg_extension_config_dump('authx.settings', '');

CREATE FUNCTION authx._settings_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_settings_changed'
LANGUAGE C;
COMMENT ON FUNCTION authx._settings_changed() IS
'Internal. Statement trigger on authx.settings: every backend''s copy of the settings is dropped when the change commits (and on standbys when it is replayed).';
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON authx.settings FOR EACH STATEMENT EXECUTE FUNCTION authx._settings_changed();
-- An extension update that adds settings reaches running backends too.
CREATE TRIGGER setting_defs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON authx.setting_defs FOR EACH STATEMENT EXECUTE FUNCTION authx._settings_changed();

CREATE FUNCTION authx.setting_get(name text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'authx_setting_get'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.setting_get(text) IS
'The value of a setting (its default unless setting_set changed it), from a copy kept per backend and dropped when a change commits. Raises 22004 for NULL, 42704 for an unknown name.';

CREATE FUNCTION authx.setting_set(name text, value jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d     authx.setting_defs;
    v_old jsonb;
    v_num double precision;
BEGIN
    PERFORM authx._require(setting_set.name, 'name');
    SELECT * INTO d FROM authx.setting_defs s WHERE s.name = setting_set.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown setting "%s"', left(setting_set.name, 100)),
            HINT = 'SELECT name FROM authx.setting_list() lists the settings.';
    END IF;
    IF setting_set.value IS NOT NULL THEN
        IF jsonb_typeof(setting_set.value) = 'null' THEN
            IF NOT d.nullable THEN
                RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('setting "%s" cannot be null', d.name),
                    HINT = format('Pass %s, or SQL NULL for the default (%s).',
                                  CASE d.kind WHEN 'integer' THEN 'an integer' ELSE 'a ' || d.kind END, d.default_value);
            END IF;
        ELSIF d.kind = 'boolean' THEN
            IF jsonb_typeof(setting_set.value) <> 'boolean' THEN
                RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('setting "%s" must be true or false', d.name),
                    HINT = format('Pass ''true'' or ''false'' as jsonb; SQL NULL restores the default (%s).', d.default_value);
            END IF;
        ELSE
            IF jsonb_typeof(setting_set.value) = 'number' THEN
                BEGIN
                    v_num := (setting_set.value #>> '{}')::double precision;
                EXCEPTION WHEN numeric_value_out_of_range THEN
                    v_num := NULL;      -- 1e400, 1e-400: out of bounds below
                END;
            END IF;
            IF v_num IS NULL OR v_num < d.min_value OR v_num > d.max_value
               OR (d.kind = 'integer' AND v_num <> trunc(v_num)) THEN
                RAISE EXCEPTION USING ERRCODE = '22023',
                    MESSAGE = format('setting "%s" must be %s between %s and %s', d.name,
                                     CASE d.kind WHEN 'integer' THEN 'an integer' ELSE 'a number' END,
                                     d.min_value, d.max_value),
                    HINT = format('%s SQL NULL restores the default (%s).', d.description, d.default_value);
            END IF;
        END IF;
    END IF;

    SELECT s.value INTO v_old FROM authx.settings s WHERE s.name = d.name FOR UPDATE;
    IF setting_set.value IS NULL THEN
        DELETE FROM authx.settings s WHERE s.name = d.name;
    ELSE
        INSERT INTO authx.settings AS s (name, value, updated_at, updated_by)
        VALUES (d.name, setting_set.value, now(), session_user)
        ON CONFLICT ON CONSTRAINT settings_pkey
        DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    END IF;
    PERFORM authx._audit_tx('setting.changed', 'medium', NULL,
                            jsonb_build_object('name', d.name, 'old', coalesce(v_old, d.default_value),
                                               'new', coalesce(setting_set.value, d.default_value),
                                               'by', session_user));
    RETURN coalesce(setting_set.value, d.default_value);
END
$$;
COMMENT ON FUNCTION authx.setting_set(text, jsonb) IS
'Changes a setting (admin; audited as setting.changed with the old and new value); SQL NULL restores its default, JSON null turns a threshold off. Returns the value now in force. Raises 22004 for a NULL name, 42704 for an unknown one, 22023 for a value of the wrong kind or out of bounds.';

CREATE FUNCTION authx.setting_list()
RETURNS TABLE(name text, value jsonb, default_value jsonb, is_default boolean, kind text,
              min_value double precision, max_value double precision, nullable boolean, description text,
              updated_at timestamptz, updated_by text)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.name, coalesce(s.value, d.default_value), d.default_value, s.name IS NULL, d.kind,
           d.min_value, d.max_value, d.nullable, d.description, s.updated_at, s.updated_by
      FROM authx.setting_defs d LEFT JOIN authx.settings s ON s.name = d.name
     ORDER BY d.name
$$;
COMMENT ON FUNCTION authx.setting_list() IS
'Every setting with its value, default, kind, bounds, description and who changed it last (admin).';

-- ----------------------------------------------------------------
-- Alerts: thresholds over authx.stats, checked by the maintenance worker
-- every few seconds.  A crossing raises the alert once (audit event
-- alert.raised and NOTIFY authx_alerts); it stays raised, silently, until
-- the value is back past the threshold by alert.hysteresis (alert.cleared,
-- notified too).
-- ----------------------------------------------------------------
CREATE TABLE authx.alert_state (
    name        text PRIMARY KEY,
    active      boolean NOT NULL DEFAULT false,
    value       double precision,
    threshold   double precision,
    since       timestamptz,
    raised      bigint NOT NULL DEFAULT 0,
    checked_at  timestamptz,
    pending_since timestamptz,
    samples     jsonb NOT NULL DEFAULT '[]'
);
COMMENT ON TABLE authx.alert_state IS
'One row per alert: raised or not, since when, the value and threshold of the last check, how often it was raised; samples of the counters behind the rate alerts.';
INSERT INTO authx.alert_state (name)
VALUES ('queue_fill'), ('cache_lag'), ('redis_down'), ('error_rate'), ('cache_hit_rate'), ('auto_blocks');

-- A setting as a number, NULL when it is JSON null (the alert is off).
CREATE FUNCTION authx._setting_num(p_name text)
RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN (v #>> '{}')::double precision END
        FROM (SELECT authx.setting_get(p_name) AS v) s $$;
COMMENT ON FUNCTION authx._setting_num(text) IS 'Internal. A numeric setting, NULL when set to JSON null.';

-- The increase of counters over the alert window, from the samples kept
-- in alert_state.samples ({"t": epoch, "c": [counters]}): appends the
-- current sample (at most one per window/30), drops those older than the
-- window, forgets them all when a counter is below the newest sample's
-- (a server restart).
CREATE FUNCTION authx._alert_window(INOUT samples jsonb, p_now timestamptz, p_window double precision,
                                    p_current bigint[], OUT delta bigint[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_t     double precision := extract(epoch FROM p_now);
    v_first jsonb;
    v_last  jsonb;
    i       integer;
BEGIN
    samples := coalesce((SELECT jsonb_agg(s ORDER BY (s->>'t')::double precision)
                           FROM jsonb_array_elements(samples) s
                          WHERE (s->>'t')::double precision >= v_t - p_window
                            AND (s->>'t')::double precision <= v_t), '[]');
    v_first := samples->0;
    v_last := samples->-1;
    IF v_last IS NOT NULL THEN
        FOR i IN 1 .. cardinality(p_current) LOOP
            IF p_current[i] < (v_last->'c'->>(i - 1))::bigint THEN
                samples := '[]';
                v_first := NULL;
                v_last := NULL;
                EXIT;
            END IF;
        END LOOP;
    END IF;
    IF v_last IS NULL OR v_t - (v_last->>'t')::double precision >= p_window / 30 THEN
        samples := samples || jsonb_build_array(jsonb_build_object('t', v_t, 'c', to_jsonb(p_current)));
    END IF;
    IF v_first IS NOT NULL THEN
        delta := (SELECT array_agg(p_current[k] - (v_first->'c'->>(k - 1))::bigint ORDER BY k)
                    FROM generate_subscripts(p_current, 1) k);
    END IF;
END
$$;
COMMENT ON FUNCTION authx._alert_window(jsonb, timestamptz, double precision, bigint[]) IS
'Internal. Counter increases over the alert window from kept samples; NULL until a first sample is in the window.';

CREATE FUNCTION authx._alerts_check(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st      jsonb;
    a       authx.alert_state;
    v_on    boolean := coalesce(authx.setting_get('alert.enabled') = 'true', true);
    v_hyst  double precision := coalesce(authx._setting_num('alert.hysteresis'), 0.1);
    v_win   double precision := coalesce(authx._setting_num('alert.window_seconds'), 300);
    v_cache boolean := coalesce(current_setting('authx.redis_url', true), '') <> '';
    v_value double precision;
    v_thr   double precision;
    v_below boolean;
    v_samp  jsonb;
    v_delta bigint[];
    v_fire  boolean;
    v_clear boolean;
    v_out   jsonb := '[]';
    v_det   jsonb;
    -- NOTIFY as for any high event: authx.alert_min_severity at high or below.
    v_notify boolean := CASE coalesce(nullif(current_setting('authx.alert_min_severity', true), ''), 'high')
                        WHEN 'off' THEN false
                        ELSE coalesce(nullif(current_setting('authx.alert_min_severity', true), ''),
                                      'high')::authx.severity <= 'high'
                        END;
BEGIN
    -- One check at a time, and never behind a waiting one: a check that
    -- finds another running (the worker's, or an administrator's still in
    -- its transaction) does nothing; nor does one older than the last.
    IF NOT pg_try_advisory_xact_lock(hashtext('authx._alerts_check')::bigint) THEN
        RETURN '[]';
    END IF;
    IF EXISTS (SELECT 1 FROM authx.alert_state s WHERE s.checked_at > p_now) THEN
        RETURN '[]';
    END IF;
    -- The counters after the lock: never older than the samples kept.
    SELECT jsonb_object_agg(s.name, s.value) INTO st FROM authx._stats() s;
    FOR a IN SELECT * FROM authx.alert_state ORDER BY name FOR UPDATE LOOP
        v_value := NULL;
        v_thr := NULL;
        v_below := false;
        v_samp := a.samples;
        CASE a.name
        WHEN 'queue_fill' THEN
            v_thr := authx._setting_num('alert.queue_fill');
            v_value := greatest(
                (st->>'audit_queue_bytes')::double precision / nullif((st->>'audit_queue_capacity_bytes')::double precision, 0),
                (st->>'usage_queue_depth')::double precision / nullif((st->>'usage_queue_capacity')::double precision, 0),
                (st->>'cache_queue_depth')::double precision / nullif((st->>'cache_queue_capacity')::double precision, 0));
        WHEN 'cache_lag' THEN
            v_thr := authx._setting_num('alert.cache_lag_ms');
            -- No operation applied in the last minute: no lag, if none waits.
            IF v_cache AND (st->>'cache_lag_p99_us')::bigint >= 0 THEN
                v_value := (st->>'cache_lag_p99_us')::double precision / 1000;
            ELSIF v_cache AND (st->>'cache_queue_depth')::bigint = 0 THEN
                v_value := 0;
            END IF;
        WHEN 'redis_down' THEN
            -- The value is how long the writer has been disconnected.
            v_thr := authx._setting_num('alert.redis_down_seconds');
            IF v_cache AND (st->>'cache_connected')::bigint = 0 THEN
                a.pending_since := coalesce(a.pending_since, p_now);
                v_value := extract(epoch FROM p_now - a.pending_since);
            ELSE
                a.pending_since := NULL;
                v_value := 0;
            END IF;
        WHEN 'error_rate' THEN
            v_thr := authx._setting_num('alert.error_rate');
            SELECT w.samples, w.delta INTO v_samp, v_delta
              FROM authx._alert_window(a.samples, p_now, v_win,
                                       ARRAY[(st->>'usage_recorded')::bigint,
                                             (st->>'usage_status_4xx')::bigint + (st->>'usage_status_5xx')::bigint]) w;
            IF v_delta[1] >= authx._setting_num('alert.error_rate_min_requests') THEN
                v_value := v_delta[2]::double precision / v_delta[1];
            END IF;
        WHEN 'cache_hit_rate' THEN
            v_thr := authx._setting_num('alert.cache_hit_rate');
            v_below := true;
            SELECT w.samples, w.delta INTO v_samp, v_delta
              FROM authx._alert_window(a.samples, p_now, v_win,
                                       ARRAY[(st->>'cache_hits')::bigint, (st->>'cache_misses')::bigint]) w;
            IF v_cache AND v_delta[1] + v_delta[2] >= authx._setting_num('alert.cache_min_lookups') THEN
                v_value := v_delta[1]::double precision / (v_delta[1] + v_delta[2]);
            END IF;
        WHEN 'auto_blocks' THEN
            v_thr := authx._setting_num('alert.auto_blocks_per_hour');
            SELECT w.samples, w.delta INTO v_samp, v_delta
              FROM authx._alert_window(a.samples, p_now, 3600, ARRAY[(st->>'threat_blocks')::bigint]) w;
            v_value := coalesce(v_delta[1], 0);
        ELSE
            NULL;
        END CASE;

        -- Off (JSON null, alerts disabled, a cache alert with the cache off)
        -- clears; no measurement keeps the state; otherwise raise on the
        -- crossing, clear with hysteresis.
        IF a.name IN ('cache_lag', 'redis_down', 'cache_hit_rate') AND NOT v_cache THEN
            v_thr := NULL;
        END IF;
        IF NOT v_on OR v_thr IS NULL THEN
            v_fire := false;
            v_clear := true;
        ELSIF v_value IS NULL THEN
            v_fire := false;
            v_clear := false;
        ELSIF v_below THEN
            v_fire := v_value < v_thr;
            v_clear := v_value >= least(v_thr * (1 + v_hyst), 1);
        ELSE
            -- A threshold of 0 means "anything above 0".
            v_fire := v_value >= v_thr AND (v_thr > 0 OR v_value > 0);
            v_clear := v_value < v_thr * (1 - v_hyst) OR (v_thr = 0 AND v_value <= 0);
        END IF;

        v_det := jsonb_build_object('alert', a.name, 'value', round(v_value::numeric, 6),
                                    'threshold', v_thr, 'direction', CASE WHEN v_below THEN 'below' ELSE 'above' END);
        IF NOT a.active AND v_fire THEN
            a.active := true;
            a.since := p_now;
            a.raised := a.raised + 1;
            INSERT INTO authx.audit_log (at, event_type, severity, details)
            VALUES (p_now, 'alert.raised', 'high', v_det);
            IF v_notify THEN
                PERFORM authx._alert(p_now, 'alert.raised', 'high', NULL, NULL, NULL, v_det);
            END IF;
            v_out := v_out || jsonb_build_array(v_det || '{"state": "raised"}');
        ELSIF a.active AND v_clear THEN
            v_det := v_det || jsonb_build_object('raised_at', a.since);
            a.active := false;
            a.since := p_now;
            INSERT INTO authx.audit_log (at, event_type, severity, details)
            VALUES (p_now, 'alert.cleared', 'info', v_det);
            -- Notified whenever its alert.raised would be, so a listener
            -- can resolve what it was told of.
            IF v_notify THEN
                PERFORM authx._alert(p_now, 'alert.cleared', 'info', NULL, NULL, NULL, v_det);
            END IF;
            v_out := v_out || jsonb_build_array(v_det || '{"state": "cleared"}');
        END IF;
        UPDATE authx.alert_state s
           SET active = a.active, value = v_value, threshold = v_thr, since = a.since, raised = a.raised,
               checked_at = p_now, pending_since = a.pending_since, samples = v_samp
         WHERE s.name = a.name;
    END LOOP;
    RETURN v_out;
END
$$;
COMMENT ON FUNCTION authx._alerts_check(timestamptz) IS
'Internal. One check of every alert as of p_now; returns the alerts raised or cleared by it.';

CREATE FUNCTION authx.alerts_check()
RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT authx._alerts_check(clock_timestamp()) $$;
COMMENT ON FUNCTION authx.alerts_check() IS
'Checks every alert now, as the maintenance worker does every 5 seconds (admin); returns the alerts raised or cleared by this check, each {alert, value, threshold, direction, state}. Does nothing (returns []) while another check is running or still in its transaction.';

CREATE VIEW authx.alerts AS
SELECT s.name, s.active, s.value, s.threshold, CASE WHEN s.name = 'cache_hit_rate' THEN 'below' ELSE 'above' END AS direction,
       s.since, s.raised, s.checked_at
  FROM authx.alert_state s;
COMMENT ON VIEW authx.alerts IS
'Each alert: raised (active) or not and since when, the value and threshold of the last check, how many times it was raised.';
