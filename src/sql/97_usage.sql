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
-- BRIN, not a btree: rows arrive in time order, so a block range index
-- finds a time range just as well and costs the worker almost nothing per
-- row (the raw insert is the largest part of its work).
CREATE INDEX usage_log_at_idx ON authx.usage_log USING brin (at);
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

-- Two coarser rollups, written with usage_hourly, so that a summary over
-- weeks reads a few thousand rows instead of every (hour, endpoint, class,
-- key) group: totals per hour (the series and the overall figures) and the
-- usage_hourly groups per day (the top endpoints and keys).
CREATE TABLE authx.usage_hourly_total (
    hour           timestamptz PRIMARY KEY,
    requests       bigint NOT NULL,
    errors_4xx     bigint NOT NULL,
    errors_5xx     bigint NOT NULL,
    latency_sum_ms double precision NOT NULL,
    latency_hist   bigint[] NOT NULL
);
COMMENT ON TABLE authx.usage_hourly_total IS
'Hourly totals of authx.usage_log over every endpoint and key: requests, 4xx and 5xx answers, latency sum and histogram; written in the same transaction as the raw rows.';
SELECT pg_catalog.pg_extension_config_dump('authx.usage_hourly_total', '');

CREATE TABLE authx.usage_daily (
    day            date NOT NULL,
    endpoint       text NOT NULL,
    status_class   smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    api_key_id     uuid NOT NULL,
    requests       bigint NOT NULL,
    latency_sum_ms double precision NOT NULL,
    latency_hist   bigint[] NOT NULL,
    PRIMARY KEY (day, endpoint, status_class, api_key_id)
);
CREATE INDEX usage_daily_key_idx ON authx.usage_daily (api_key_id, day);
COMMENT ON TABLE authx.usage_daily IS
'Daily (UTC) rollups of authx.usage_log, the groups of authx.usage_hourly per day; written in the same transaction as the raw rows.';
SELECT pg_catalog.pg_extension_config_dump('authx.usage_daily', '');

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

CREATE TABLE authx.usage_daily_ip (
    day      date NOT NULL,
    ip       inet NOT NULL,
    requests bigint NOT NULL,
    errors   bigint NOT NULL,
    PRIMARY KEY (day, ip)
);
COMMENT ON TABLE authx.usage_daily_ip IS
'The 100 busiest client addresses of each finished day (UTC), summed from usage_hourly_ip by maintenance, for the top addresses of usage_summary over weeks.';
SELECT pg_catalog.pg_extension_config_dump('authx.usage_daily_ip', '');

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
    v_from  timestamptz;
    v_day   date;
    v_dayts timestamptz;
    v_today date;
    v_key   uuid := usage_summary.api_key_id;
    v       jsonb;
BEGIN
    PERFORM authx._require(usage_summary.since, 'since');
    IF usage_summary.since < interval '1 second' OR usage_summary.since > interval '400 days' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'since must be between 1 second and 400 days',
            HINT = 'Pass an interval such as ''7 days''.';
    END IF;
    -- Whole hours: the hour that contains now() - since is counted in full.
    v_from := date_trunc('hour', now() - usage_summary.since, 'UTC');
    -- The first whole day (UTC) in the window: groups come from usage_daily
    -- from that day on, from usage_hourly for the hours before it.
    v_day := (v_from AT TIME ZONE 'UTC')::date;
    IF (v_day::timestamp AT TIME ZONE 'UTC') < v_from THEN
        v_day := v_day + 1;
    END IF;
    v_dayts := v_day::timestamp AT TIME ZONE 'UTC';
    v_today := (now() AT TIME ZONE 'UTC')::date;
    WITH hours AS MATERIALIZED (
        -- Per hour: the totals rollup, or one key's groups summed.
        SELECT t.hour, t.requests, t.errors_4xx AS e4, t.errors_5xx AS e5, t.latency_sum_ms AS lat_sum,
               t.latency_hist AS hist
          FROM authx.usage_hourly_total t
         WHERE v_key IS NULL AND t.hour >= v_from
        UNION ALL
        SELECT h.hour, sum(h.requests), coalesce(sum(h.requests) FILTER (WHERE h.status_class = 4), 0),
               coalesce(sum(h.requests) FILTER (WHERE h.status_class = 5), 0), sum(h.latency_sum_ms),
               authx._hist_sum(h.latency_hist)
          FROM authx.usage_hourly h
         WHERE v_key IS NOT NULL AND h.api_key_id = v_key AND h.hour >= v_from
         GROUP BY h.hour
    ), tot AS (
        SELECT coalesce(sum(x.requests), 0) AS requests, coalesce(sum(x.e4), 0) AS e4, coalesce(sum(x.e5), 0) AS e5,
               sum(x.lat_sum) AS lat_sum, authx._hist_sum(x.hist) AS hist
          FROM hours x
    ), g AS MATERIALIZED (
        -- Per endpoint and per key in one pass (GROUPING SETS), over whole
        -- days and the hours before the first of them.
        SELECT GROUPING(p.endpoint) = 0 AS by_endpoint, p.endpoint, p.api_key_id,
               sum(p.requests) AS requests,
               coalesce(sum(p.requests) FILTER (WHERE p.status_class >= 4), 0) AS errors,
               authx._hist_sum(p.latency_hist) AS hist
          FROM (SELECT d.endpoint, d.status_class, d.api_key_id, d.requests, d.latency_hist
                  FROM authx.usage_daily d
                 WHERE d.day >= v_day AND (v_key IS NULL OR d.api_key_id = v_key)
                UNION ALL
                SELECT h.endpoint, h.status_class, h.api_key_id, h.requests, h.latency_hist
                  FROM authx.usage_hourly h
                 WHERE h.hour >= v_from AND h.hour < v_dayts AND (v_key IS NULL OR h.api_key_id = v_key)) p
         GROUP BY GROUPING SETS ((p.endpoint), (p.api_key_id))
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
            SELECT jsonb_agg(jsonb_build_object('endpoint', e.endpoint, 'requests', e.requests, 'errors', e.errors,
                                                'p95_ms', round(authx._hist_quantile(e.hist, 0.95)::numeric, 3))
                             ORDER BY e.requests DESC, e.endpoint)
              FROM (SELECT * FROM g WHERE g.by_endpoint ORDER BY g.requests DESC, g.endpoint LIMIT 10) e), '[]'),
        'top_keys', coalesce((
            SELECT jsonb_agg(jsonb_build_object('api_key_id', k.api_key_id, 'requests', k.requests, 'errors', k.errors)
                             ORDER BY k.requests DESC, k.api_key_id)
              FROM (SELECT * FROM g WHERE NOT g.by_endpoint AND g.api_key_id <> '00000000-0000-0000-0000-000000000000'
                     ORDER BY g.requests DESC, g.api_key_id LIMIT 10) k), '[]'),
        'top_ips', CASE WHEN v_key IS NULL THEN coalesce((
            SELECT jsonb_agg(jsonb_build_object('ip', i.ip, 'requests', i.requests, 'errors', i.errors)
                             ORDER BY i.requests DESC, i.ip)
              FROM (SELECT x.ip, sum(x.requests) AS requests, sum(x.errors) AS errors
                      FROM (-- whole finished days that maintenance has summed,
                            SELECT y.ip, y.requests, y.errors FROM authx.usage_daily_ip y
                             WHERE y.day >= v_day AND y.day < v_today
                            UNION ALL
                            -- the hours of the first, partial day,
                            SELECT y.ip, y.requests, y.errors FROM authx.usage_hourly_ip y
                             WHERE y.hour >= v_from AND y.hour < least(v_dayts, v_today::timestamp AT TIME ZONE 'UTC')
                            UNION ALL
                            -- today's hours,
                            SELECT y.ip, y.requests, y.errors FROM authx.usage_hourly_ip y
                             WHERE y.hour >= greatest(v_from, v_today::timestamp AT TIME ZONE 'UTC')
                            UNION ALL
                            -- and the hours of whole days not summed (yet).
                            SELECT y.ip, y.requests, y.errors
                              FROM generate_series(0, v_today - v_day - 1) k
                              JOIN authx.usage_hourly_ip y
                                ON y.hour >= ((v_day + k)::timestamp AT TIME ZONE 'UTC')
                               AND y.hour < ((v_day + k + 1)::timestamp AT TIME ZONE 'UTC')
                             WHERE NOT EXISTS (SELECT 1 FROM authx.usage_daily_ip z WHERE z.day = v_day + k)) x
                     GROUP BY x.ip ORDER BY 2 DESC, 1 LIMIT 10) i), '[]') END,
        'series', coalesce((
            SELECT jsonb_agg(jsonb_build_object('hour', s.hour, 'requests', s.requests, 'errors_4xx', s.e4,
                                                'errors_5xx', s.e5,
                                                'p50_ms', round(authx._hist_quantile(s.hist, 0.50)::numeric, 3),
                                                'p95_ms', round(authx._hist_quantile(s.hist, 0.95)::numeric, 3),
                                                'p99_ms', round(authx._hist_quantile(s.hist, 0.99)::numeric, 3))
                             ORDER BY s.hour)
              FROM hours s), '[]'))
      INTO v
      FROM tot t;
    RETURN v;
END
$$;
COMMENT ON FUNCTION authx.usage_summary(interval, uuid) IS
'Request volume, 4xx/5xx counts and error rate, latency mean and p50/p95/p99 (from the hourly histograms: within 9.1%), the top 10 endpoints, API keys and addresses, and a series per hour, over the whole hours since now() - since (UTC), for one API key or all. Reads the rollups only (usage_hourly_total for totals and the series, usage_daily for whole days and usage_hourly for the hours before the first; one key: usage_hourly and usage_daily). Raises 22023 for since outside 1 second to 400 days.';

-- Housekeeping called by maintenance_run: rollups older than 400 days, and
-- the per-address rollups cut to the busiest addresses.
CREATE FUNCTION authx._usage_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hour  timestamptz := date_trunc('hour', p_now, 'UTC');
    v_today date := (p_now AT TIME ZONE 'UTC')::date;
    v_old   timestamptz := p_now - interval '400 days';
    v_h bigint;
    v_t bigint;
    v_d bigint;
    v_i bigint;
    v_c bigint;
    v_r bigint;
    v_n bigint := 0;
    d   date;
BEGIN
    DELETE FROM authx.usage_hourly h WHERE h.hour < v_old;
    GET DIAGNOSTICS v_h = ROW_COUNT;
    DELETE FROM authx.usage_hourly_total h WHERE h.hour < v_old;
    GET DIAGNOSTICS v_t = ROW_COUNT;
    DELETE FROM authx.usage_daily x WHERE x.day < (v_old AT TIME ZONE 'UTC')::date;
    GET DIAGNOSTICS v_d = ROW_COUNT;
    DELETE FROM authx.usage_hourly_ip h WHERE h.hour < v_old;
    GET DIAGNOSTICS v_i = ROW_COUNT;
    DELETE FROM authx.usage_daily_ip x WHERE x.day < (v_old AT TIME ZONE 'UTC')::date;
    GET DIAGNOSTICS v_r = ROW_COUNT;
    v_i := v_i + v_r;
    -- Each finished hour of the last week keeps its 100 busiest addresses:
    -- a flood from a million addresses must not make the rollup as large
    -- as the raw log (and usage_summary as slow as a scan of it).
    DELETE FROM authx.usage_hourly_ip h
     USING (SELECT x.hour, x.ip,
                   row_number() OVER (PARTITION BY x.hour ORDER BY x.requests DESC, x.ip) AS rn
              FROM authx.usage_hourly_ip x
             WHERE x.hour >= v_hour - interval '7 days' AND x.hour < v_hour
               AND x.hour IN (SELECT y.hour FROM authx.usage_hourly_ip y
                               WHERE y.hour >= v_hour - interval '7 days' AND y.hour < v_hour
                               GROUP BY y.hour HAVING count(*) > 100)) r
     WHERE h.hour = r.hour AND h.ip = r.ip AND r.rn > 100;
    GET DIAGNOSTICS v_c = ROW_COUNT;
    -- Then each finished day of the last week has its 100 busiest addresses
    -- in usage_daily_ip, for summaries over weeks, recomputed at every pass
    -- (records queued before midnight may arrive after it); only what
    -- changed is written, so a pass over unchanged days writes nothing.
    FOR d IN SELECT v_today - i FROM generate_series(7, 1, -1) i LOOP
        WITH top AS MATERIALIZED (
            SELECT h.ip, sum(h.requests) AS requests, sum(h.errors) AS errors
              FROM authx.usage_hourly_ip h
             WHERE h.hour >= (d::timestamp AT TIME ZONE 'UTC') AND h.hour < ((d + 1)::timestamp AT TIME ZONE 'UTC')
             GROUP BY h.ip
             ORDER BY 2 DESC, 1
             LIMIT 100
        ), gone AS (
            DELETE FROM authx.usage_daily_ip x
             WHERE x.day = d AND x.ip NOT IN (SELECT t.ip FROM top t)
            RETURNING 1
        ), upd AS (
            INSERT INTO authx.usage_daily_ip AS x (day, ip, requests, errors)
            SELECT d, t.ip, t.requests, t.errors FROM top t
                ON CONFLICT (day, ip) DO UPDATE SET requests = excluded.requests, errors = excluded.errors
                   WHERE (x.requests, x.errors) IS DISTINCT FROM (excluded.requests, excluded.errors)
            RETURNING 1
        )
        SELECT v_n + (SELECT count(*) FROM gone) + (SELECT count(*) FROM upd) INTO v_n;
    END LOOP;
    RETURN jsonb_build_object('hourly_purged', v_h, 'hourly_total_purged', v_t, 'daily_purged', v_d,
                              'ip_purged', v_i, 'hourly_ip_compacted', v_c, 'daily_ip_changed', v_n);
END
$$;
COMMENT ON FUNCTION authx._usage_purge(timestamptz) IS 'Internal. Deletes usage rollups older than 400 days; keeps the 100 busiest addresses of each finished hour of the last week; keeps usage_daily_ip equal to the 100 busiest addresses of each finished day of the last week (rows changed: daily_ip_changed).';

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
    v_alerts jsonb;
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
        'queue_depth', (st->>'cache_queue_depth')::bigint, 'lag_p99_us', (st->>'cache_lag_p99_us')::bigint,
        'hit_rate', round((st->>'cache_hits')::numeric
                          / nullif((st->>'cache_hits')::numeric + (st->>'cache_misses')::numeric, 0), 4)));
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

    -- Threshold alerts raised now (authx.alerts), named beside the checks:
    -- they describe the traffic (error rate, blocks) as much as authx, so
    -- they do not change the status a load balancer may act on.
    SELECT coalesce(jsonb_agg(a.name ORDER BY a.name), '[]') INTO v_alerts FROM authx.alert_state a WHERE a.active;

    RETURN jsonb_build_object('status', v_status, 'at', now(), 'checks', v_checks, 'alerts', v_alerts);
END
$$;
COMMENT ON FUNCTION authx.health() IS
'Overall status ok | degraded | failing and its checks: maintenance worker running and through a pass within 3 naptimes (else failing), audit and usage queues (degraded past 80% full, failing past 95%), the Redis writer connected when authx.redis_url is set (else degraded), audit_log and usage_log partitions made authx.audit_premake days ahead (else degraded). alerts names the threshold alerts raised now (they do not change the status). checks.redis.hit_rate: the share of gateway lookups Redis answered since the server started. Raises 55000 without shared_preload_libraries.';
