-- ================================================================
-- Usage analytics (src/usage.c): raw rows, hourly rollups, summaries
-- ================================================================

CREATE TABLE authx.usage_log (
    at         timestamptz NOT NULL,
    endpoint   text NOT NULL,
    status     smallint NOT NULL,
    latency_ms real NOT NULL,
    api_key_id uuid,
    user_id    uuid,
    ip         inet
) PARTITION BY RANGE (at);
CREATE INDEX usage_log_at_idx ON authx.usage_log (at);
CREATE TABLE authx.usage_log_default PARTITION OF authx.usage_log DEFAULT;
COMMENT ON TABLE authx.usage_log IS
'One row per authx.usage_record call, written in batches by the maintenance worker; daily partitions made ahead (authx.audit_premake) and dropped after authx.usage_retention days.';
SELECT pg_catalog.pg_extension_config_dump('authx.usage_log_default', '');

CREATE TABLE authx.usage_hourly (
    hour           timestamptz NOT NULL,
    endpoint       text NOT NULL,
    status_class   smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    api_key_id     uuid NOT NULL,
    requests       bigint NOT NULL,
    latency_sum_ms double precision NOT NULL,
    latency_hist   bigint[] NOT NULL,
    PRIMARY KEY (hour, endpoint, status_class, api_key_id)
);
CREATE INDEX usage_hourly_key_idx ON authx.usage_hourly (api_key_id, hour);
COMMENT ON TABLE authx.usage_hourly IS
'Hourly rollups of authx.usage_log, written in the same transaction as the raw rows: requests, latency sum and a latency histogram (96 log-scale buckets, 4 per octave from 0.01 ms) per hour (UTC), endpoint, status class (2 = 2xx …) and API key (the nil uuid: none).';
SELECT pg_catalog.pg_extension_config_dump('authx.usage_hourly', '');

CREATE TABLE authx.usage_hourly_ip (
    hour     timestamptz NOT NULL,
    ip       inet NOT NULL,
    requests bigint NOT NULL,
    errors   bigint NOT NULL,
    PRIMARY KEY (hour, ip)
);
COMMENT ON TABLE authx.usage_hourly_ip IS
'Hourly requests and 4xx/5xx answers per client address, for the top addresses of usage_summary; once an hour is over, maintenance keeps only its 100 busiest addresses.';
SELECT pg_catalog.pg_extension_config_dump('authx.usage_hourly_ip', '');

CREATE FUNCTION authx.usage_record(endpoint text, status integer, latency_ms real, api_key_id uuid DEFAULT NULL,
                                   user_id uuid DEFAULT NULL, ip inet DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'authx_usage_record'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.usage_record(text, integer, real, uuid, uuid, inet) IS
'Records one request (call it per request): queued in shared memory without a lock and written in batches by the maintenance worker, even if the caller rolls back. A full queue drops the record (stats: usage_dropped). Raises 22023 for an endpoint outside 1-128 bytes, a status outside 100-599 or a latency outside 0-1e9 ms, 22004 for NULLs, 55000 without shared_preload_libraries.';

CREATE FUNCTION authx._latency_hist(latencies real[])
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'authx_latency_hist'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._latency_hist(real[]) IS 'Internal. Counts latencies (ms) per histogram bucket.';

CREATE FUNCTION authx._hist_add(a bigint[], b bigint[])
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'authx_hist_add'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION authx._hist_add(bigint[], bigint[]) IS 'Internal. Adds two latency histograms bucket by bucket (NULL is empty).';

CREATE FUNCTION authx._hist_accum(state internal, hist bigint[])
RETURNS internal
AS 'MODULE_PATHNAME', 'authx_hist_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION authx._hist_accum(internal, bigint[]) IS 'Internal. Transition function of authx._hist_sum.';

CREATE FUNCTION authx._hist_final(state internal)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'authx_hist_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION authx._hist_final(internal) IS 'Internal. Final function of authx._hist_sum.';

CREATE AGGREGATE authx._hist_sum(bigint[]) (SFUNC = authx._hist_accum, STYPE = internal, FINALFUNC = authx._hist_final);
COMMENT ON AGGREGATE authx._hist_sum(bigint[]) IS 'Internal. The sum of latency histograms (NULL over no rows).';

CREATE FUNCTION authx._hist_quantile(hist bigint[], q double precision)
RETURNS double precision
AS 'MODULE_PATHNAME', 'authx_hist_quantile'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._hist_quantile(bigint[], double precision) IS
'Internal. The q-quantile of a latency histogram in ms, the geometric middle of its bucket: within 9.1% of the true value.';

CREATE FUNCTION authx.usage_summary(since interval DEFAULT '24 hours', api_key_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_from timestamptz;
    v_key  uuid := usage_summary.api_key_id;
    v      jsonb;
BEGIN
    PERFORM authx._require(usage_summary.since, 'since');
    IF usage_summary.since < interval '1 second' OR usage_summary.since > interval '400 days' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'since must be between 1 second and 400 days',
            HINT = 'Pass an interval such as ''7 days''.';
    END IF;
    -- Whole hours: the hour that contains now() - since is counted in full.
    v_from := date_trunc('hour', now() - usage_summary.since, 'UTC');
    -- One pass over the rollups: the total, per endpoint, per hour and per
    -- key at once (GROUPING SETS); the JSON is built from those few rows.
    WITH g AS MATERIALIZED (
        SELECT GROUPING(h.endpoint) = 0 AS by_endpoint, GROUPING(h.hour) = 0 AS by_hour,
               GROUPING(h.api_key_id) = 0 AS by_key,
               h.endpoint, h.hour, h.api_key_id,
               sum(h.requests) AS requests,
               coalesce(sum(h.requests) FILTER (WHERE h.status_class = 4), 0) AS e4,
               coalesce(sum(h.requests) FILTER (WHERE h.status_class = 5), 0) AS e5,
               sum(h.latency_sum_ms) AS lat_sum,
               authx._hist_sum(h.latency_hist) AS hist
          FROM authx.usage_hourly h
         WHERE h.hour >= v_from AND (v_key IS NULL OR h.api_key_id = v_key)
         GROUP BY GROUPING SETS ((), (h.endpoint), (h.hour), (h.api_key_id))
    ), tot AS (
        -- The grand total: the one row of the empty grouping set (there even
        -- when no rollup is in the window).
        SELECT coalesce(g.requests, 0) AS requests, g.e4, g.e5, g.lat_sum, g.hist
          FROM g WHERE NOT (g.by_endpoint OR g.by_hour OR g.by_key)
    )
    SELECT jsonb_build_object(
        'from', v_from,
        'to', now(),
        'api_key_id', v_key,
        'requests', t.requests,
        'errors_4xx', t.e4,
        'errors_5xx', t.e5,
        'error_rate', CASE WHEN t.requests > 0 THEN round((t.e4 + t.e5)::numeric / t.requests, 4) ELSE 0 END,
        'latency_ms', jsonb_build_object(
            'mean', CASE WHEN t.requests > 0 THEN round((t.lat_sum / t.requests)::numeric, 3) END,
            'p50', round(authx._hist_quantile(t.hist, 0.50)::numeric, 3),
            'p95', round(authx._hist_quantile(t.hist, 0.95)::numeric, 3),
            'p99', round(authx._hist_quantile(t.hist, 0.99)::numeric, 3),
            'relative_error_bound', 0.0905),
        'top_endpoints', coalesce((
            SELECT jsonb_agg(jsonb_build_object('endpoint', e.endpoint, 'requests', e.requests, 'errors', e.e4 + e.e5,
                                                'p95_ms', round(authx._hist_quantile(e.hist, 0.95)::numeric, 3))
                             ORDER BY e.requests DESC, e.endpoint)
              FROM (SELECT * FROM g WHERE g.by_endpoint ORDER BY g.requests DESC, g.endpoint LIMIT 10) e), '[]'),
        'top_keys', coalesce((
            SELECT jsonb_agg(jsonb_build_object('api_key_id', k.api_key_id, 'requests', k.requests, 'errors', k.e4 + k.e5)
                             ORDER BY k.requests DESC, k.api_key_id)
              FROM (SELECT * FROM g WHERE g.by_key AND g.api_key_id <> '00000000-0000-0000-0000-000000000000'
                     ORDER BY g.requests DESC, g.api_key_id LIMIT 10) k), '[]'),
        'top_ips', CASE WHEN v_key IS NULL THEN coalesce((
            SELECT jsonb_agg(jsonb_build_object('ip', i.ip, 'requests', i.requests, 'errors', i.errors)
                             ORDER BY i.requests DESC, i.ip)
              FROM (SELECT x.ip, sum(x.requests) AS requests, sum(x.errors) AS errors
                      FROM authx.usage_hourly_ip x WHERE x.hour >= v_from
                     GROUP BY x.ip ORDER BY 2 DESC, 1 LIMIT 10) i), '[]') END,
        'series', coalesce((
            SELECT jsonb_agg(jsonb_build_object('hour', s.hour, 'requests', s.requests, 'errors_4xx', s.e4,
                                                'errors_5xx', s.e5,
                                                'p50_ms', round(authx._hist_quantile(s.hist, 0.50)::numeric, 3),
                                                'p95_ms', round(authx._hist_quantile(s.hist, 0.95)::numeric, 3),
                                                'p99_ms', round(authx._hist_quantile(s.hist, 0.99)::numeric, 3))
                             ORDER BY s.hour)
              FROM g s WHERE s.by_hour), '[]'))
      INTO v
      FROM tot t;
    RETURN v;
END
$$;
COMMENT ON FUNCTION authx.usage_summary(interval, uuid) IS
'Request volume, 4xx/5xx counts and error rate, latency mean and p50/p95/p99 (from the hourly histograms: within 9.1%), the top 10 endpoints, API keys and addresses, and a series per hour, over the whole hours since now() - since (UTC), for one API key or all. Reads the rollups only. Raises 22023 for since outside 1 second to 400 days.';

-- Housekeeping called by maintenance_run: rollups older than 400 days.
CREATE FUNCTION authx._usage_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_h bigint;
    v_i bigint;
    v_c bigint;
BEGIN
    DELETE FROM authx.usage_hourly h WHERE h.hour < p_now - interval '400 days';
    GET DIAGNOSTICS v_h = ROW_COUNT;
    DELETE FROM authx.usage_hourly_ip h WHERE h.hour < p_now - interval '400 days';
    GET DIAGNOSTICS v_i = ROW_COUNT;
    -- Each finished hour of the last week keeps its 100 busiest addresses:
    -- a flood from a million addresses must not make the rollup as large
    -- as the raw log (and usage_summary as slow as a scan of it).
    DELETE FROM authx.usage_hourly_ip h
     USING (SELECT x.hour, x.ip,
                   row_number() OVER (PARTITION BY x.hour ORDER BY x.requests DESC, x.ip) AS rn
              FROM authx.usage_hourly_ip x
             WHERE x.hour >= date_trunc('hour', p_now, 'UTC') - interval '7 days'
               AND x.hour < date_trunc('hour', p_now, 'UTC')
               AND x.hour IN (SELECT y.hour FROM authx.usage_hourly_ip y
                               WHERE y.hour >= date_trunc('hour', p_now, 'UTC') - interval '7 days'
                                 AND y.hour < date_trunc('hour', p_now, 'UTC')
                               GROUP BY y.hour HAVING count(*) > 100)) r
     WHERE h.hour = r.hour AND h.ip = r.ip AND r.rn > 100;
    GET DIAGNOSTICS v_c = ROW_COUNT;
    RETURN jsonb_build_object('hourly_purged', v_h, 'hourly_ip_purged', v_i, 'hourly_ip_compacted', v_c);
END
$$;
COMMENT ON FUNCTION authx._usage_purge(timestamptz) IS 'Internal. Deletes hourly usage rollups older than 400 days; keeps the 100 busiest addresses of each finished hour of the last week.';

-- ================================================================
-- Monitoring: Prometheus text and health
-- ================================================================

CREATE FUNCTION authx.metrics()
RETURNS text
AS 'MODULE_PATHNAME', 'authx_metrics'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.metrics() IS
'authx.stats in the Prometheus text exposition format (counters authx_<name>_total, gauges authx_<name>) and the histogram authx_request_duration_seconds of the latencies given to usage_record. Raises 55000 without shared_preload_libraries.';

-- Days of daily partitions made ahead of today (UTC) for a parent.
CREATE FUNCTION authx._partitions_ahead(p_parent text)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(max(to_date(right(c.relname, 8), 'YYYYMMDD')) - (now() AT TIME ZONE 'UTC')::date, -1)
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = p_parent::regclass AND c.relname ~ ('^' || split_part(p_parent, '.', 2) || '_p[0-9]{8}$')
$$;
COMMENT ON FUNCTION authx._partitions_ahead(text) IS
'Internal. How many days past today (UTC) the daily partitions of authx.audit_log or authx.usage_log reach; -1 without any.';

CREATE FUNCTION authx.health()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st       jsonb;
    v_checks jsonb := '{}';
    v_status text := 'ok';
    v_nap    integer := extract(epoch FROM authx._setting_interval('authx.maintenance_naptime', '60 seconds'))::integer;
    v_pre    integer := coalesce(nullif(current_setting('authx.audit_premake', true), ''), '3')::integer;
    v_cache  boolean := coalesce(current_setting('authx.redis_url', true), '') <> '';
    v_fill   numeric;
    v_ok     boolean;
    v_days   integer;
    p        text;
BEGIN
    SELECT jsonb_object_agg(s.name, s.value) INTO st FROM authx._stats() s;

    -- The maintenance worker: running and through a pass within 3 naptimes.
    v_ok := (st->>'maintenance_worker_pid')::bigint > 0
            AND (st->>'maintenance_last_run_age_ms')::bigint BETWEEN 0 AND 3000::bigint * greatest(v_nap, 1) + 5000;
    v_checks := v_checks || jsonb_build_object('maintenance_worker', jsonb_build_object(
        'ok', v_ok, 'pid', (st->>'maintenance_worker_pid')::bigint,
        'last_run_age_ms', (st->>'maintenance_last_run_age_ms')::bigint));
    IF NOT v_ok THEN
        v_status := 'failing';
    END IF;

    -- Queues: degraded past 80% full, failing past 95% (the audit queue then
    -- falls back to synchronous inserts, usage records are dropped).
    FOREACH p IN ARRAY ARRAY['audit', 'usage'] LOOP
        v_fill := CASE p WHEN 'audit' THEN (st->>'audit_queue_bytes')::numeric / nullif((st->>'audit_queue_capacity_bytes')::numeric, 0)
                         ELSE (st->>'usage_queue_depth')::numeric / nullif((st->>'usage_queue_capacity')::numeric, 0) END;
        v_fill := round(coalesce(v_fill, 0), 4);
        v_checks := v_checks || jsonb_build_object(p || '_queue', jsonb_build_object('ok', v_fill < 0.8, 'fill', v_fill));
        IF v_fill >= 0.95 THEN
            v_status := 'failing';
        ELSIF v_fill >= 0.8 AND v_status = 'ok' THEN
            v_status := 'degraded';
        END IF;
    END LOOP;

    -- Redis write-through: when configured, the writer must be connected.
    v_checks := v_checks || jsonb_build_object('redis', jsonb_build_object(
        'configured', v_cache, 'connected', (st->>'cache_connected')::bigint = 1,
        'ok', NOT v_cache OR (st->>'cache_connected')::bigint = 1,
        'queue_depth', (st->>'cache_queue_depth')::bigint, 'lag_p99_us', (st->>'cache_lag_p99_us')::bigint));
    IF v_cache AND (st->>'cache_connected')::bigint <> 1 AND v_status = 'ok' THEN
        v_status := 'degraded';
    END IF;

    -- Partitions made ahead for both logs.
    FOREACH p IN ARRAY ARRAY['authx.audit_log', 'authx.usage_log'] LOOP
        v_days := authx._partitions_ahead(p);
        v_checks := v_checks || jsonb_build_object(split_part(p, '.', 2) || '_partitions',
                                                   jsonb_build_object('ok', v_days >= v_pre, 'days_ahead', v_days,
                                                                      'premake', v_pre));
        IF v_days < v_pre AND v_status = 'ok' THEN
            v_status := 'degraded';
        END IF;
    END LOOP;

    RETURN jsonb_build_object('status', v_status, 'at', now(), 'checks', v_checks);
END
$$;
COMMENT ON FUNCTION authx.health() IS
'Overall status ok | degraded | failing and its checks: maintenance worker running and through a pass within 3 naptimes (else failing), audit and usage queues (degraded past 80% full, failing past 95%), the Redis writer connected when authx.redis_url is set (else degraded), audit_log and usage_log partitions made authx.audit_premake days ahead (else degraded). Raises 55000 without shared_preload_libraries.';
