--
-- Usage analytics: every invalid argument of usage_record, of the histogram
-- helpers and of usage_summary (one line each, through regress.try); the
-- histogram helpers on known values; then known records, written by the
-- maintenance worker, as raw rows, hourly rollups (per status class and
-- key, per address) and the summaries of two keys; the latency bounds 0
-- and 1e9 ms accepted, and what metrics() adds to its _sum per call,
-- llround(latency * 1000) us.
--
-- Records outlive a run, so the endpoint, keys and addresses are unique to
-- the run and never printed (keys as key1 / key2, addresses as their
-- offset from the run's IPv6 prefix).  The worker writes asynchronously:
-- the rows are waited for (regress.usage_wait, at most 10 s).  Hours and
-- times are never printed (a run may straddle an hour): the rollups are
-- summed over hours.  Latencies are multiples of 1/4 ms (sums exact).
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SELECT 'GET /regress/' || md5(random()::text) AS ep, gen_random_uuid() AS key1, gen_random_uuid() AS key2,
       format('2001:db8:%s:%s::', to_hex((random() * 65535)::int), to_hex((random() * 65535)::int)) AS pre \gset
-- Waits until p_n rows of the endpoint are in usage_log (10 s at most) and
-- returns how many there are.
CREATE FUNCTION regress.usage_wait(p_endpoint text, p_n bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    FOR i IN 1 .. 100 LOOP
        SELECT count(*) INTO n FROM authx.usage_log WHERE endpoint = p_endpoint;
        EXIT WHEN n >= p_n;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN n;
END
$$;
-- The non-empty buckets of a histogram, "bucket:count ...".
CREATE FUNCTION regress.hist_nz(h bigint[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg((k - 1) || ':' || h[k], ' ' ORDER BY k) FROM generate_subscripts(h, 1) k WHERE h[k] <> 0
$$;

-- ================================================================ invalid input
SELECT value AS recorded0 FROM authx.stats WHERE name = 'usage_recorded' \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.usage_record(NULL, 200, 1)$$),
    ($$authx.usage_record('GET /x', NULL, 1)$$),
    ($$authx.usage_record('GET /x', 200, NULL)$$),
    ($$authx.usage_record(NULL, NULL, NULL)$$),
    ($$authx.usage_record('', 200, 1)$$),
    ($$authx.usage_record(repeat('x', 129), 200, 1)$$),
    ($$authx.usage_record(repeat('é', 65), 200, 1)$$),
    ($$authx.usage_record('GET /x', 99, 1)$$),
    ($$authx.usage_record('GET /x', 600, 1)$$),
    ($$authx.usage_record('GET /x', 200, -1)$$),
    ($$authx.usage_record('GET /x', 200, 'NaN')$$),
    ($$authx.usage_record('GET /x', 200, 'Infinity')$$),
    ($$authx.usage_record('GET /x', 200, '-Infinity')$$),
    ($$authx.usage_record('GET /x', 200, 1e10)$$),
    ($$authx.usage_record('GET /x', 200, 1000000064)$$),
    ($$authx.usage_record('GET /x', 200, 1e39)$$),
    ($$authx.usage_record('GET /x', 200, 1, ip => 'not an address')$$),
    ($$authx._hist_quantile('{1,2,3}', 0.5)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[95]), 0.5)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[97]), 0.5)$$),
    ($$authx._hist_quantile('{}', 0.5)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[2, 48]), 0.5)$$),
    ($$authx._hist_quantile('{1,2,3}', 2)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), -0.01)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 1.01)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 'NaN')$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), '-Infinity')$$),
    ($$authx._hist_add('{1}', NULL)$$),
    ($$authx._hist_add(NULL, array_fill(0::bigint, ARRAY[95]))$$),
    ($$authx._hist_sum(h) FROM (VALUES ('{1,2}'::bigint[])) v(h)$$),
    ($$authx.usage_summary(NULL)$$),
    ($$authx.usage_summary(NULL, NULL)$$),
    ($$authx.usage_summary('0')$$),
    ($$authx.usage_summary('0.5 seconds')$$),
    ($$authx.usage_summary('999 milliseconds')$$),
    ($$authx.usage_summary('-1 hour')$$),
    ($$authx.usage_summary('1 day -25 hours')$$),
    ($$authx.usage_summary('401 days')$$),
    ($$authx.usage_summary('14 months')$$)
) v(call);
-- Accepted: the bounds, and NULL where NULL is allowed.
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 0)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 1)$$),
    ($$authx._hist_quantile(NULL, 0.5)$$),
    ($$authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), NULL)$$),
    ($$authx._hist_add(NULL, NULL)$$),
    ($$authx._latency_hist(NULL)$$),
    ($$authx.usage_summary('400 days')$$),
    ($$authx.usage_summary('1 year')$$),
    ($$authx.usage_summary('1 second', NULL)$$)
) v(call);
-- Nothing was recorded by the refused calls (nothing else records meanwhile).
SELECT value - :recorded0 AS recorded FROM authx.stats WHERE name = 'usage_recorded';

-- ================================================================ histograms
-- Bucket k >= 1 holds [0.01 * 2^((k-1)/4), 0.01 * 2^(k/4)) ms, compared at
-- float4 precision: 0.01, 0.02 and 0.04 (their reals a little below the
-- decimal value) start buckets 1, 5 and 9; the reals just below them
-- (0.009999999, 0.019999998, 0.039999995) are in the bucket before.
SELECT l AS latency_ms, regress.hist_nz(authx._latency_hist(ARRAY[l])) AS bucket
  FROM unnest('{0, 0.005, 0.009999999, 0.01, 0.0118, 0.0119, 0.019999998, 0.02, 0.039999995, 0.04, 0.5, 1, 1.5, 3,
                250, 1000, 118000, 119000, 1e9, Infinity}'::real[]) l;
SELECT regress.hist_nz(authx._latency_hist('{1, 2, 3, 5, 8, 13, 21, 34, 55, 89}')) AS fibonacci;
SELECT q, round(authx._hist_quantile(authx._latency_hist('{1, 2, 3, 5, 8, 13, 21, 34, 55, 89}'), q)::numeric, 4) AS ms
  FROM unnest('{0, 0.1, 0.11, 0.5, 0.9, 0.91, 1}'::float8[]) q;
SELECT round(authx._hist_quantile(authx._latency_hist('{0.001}'), 0.5)::numeric, 4) AS bucket_0,
       round(authx._hist_quantile(authx._latency_hist('{1e9}'), 0.5)::numeric, 4) AS last_bucket,
       authx._hist_quantile(authx._latency_hist('{}'), 0.5) AS empty;
SELECT regress.hist_nz(authx._hist_add(authx._latency_hist('{1, 1, 1e9}'), authx._latency_hist('{1, 0}'))) AS added,
       regress.hist_nz(authx._hist_add(NULL, authx._latency_hist('{3}'))) AS with_null,
       cardinality(authx._hist_add(NULL, NULL)) AS buckets, regress.hist_nz(authx._hist_add(NULL, NULL)) AS none;
SELECT regress.hist_nz(authx._hist_sum(h)) AS summed, (SELECT authx._hist_sum(h) FROM (VALUES (NULL::bigint[])) v(h) WHERE false)
       AS over_no_rows
  FROM (VALUES (authx._latency_hist('{1, 2}')), (NULL), (authx._latency_hist('{2, 250}'))) v(h);

-- ================================================================ rollups
-- 15 records: key1 5 x 200 at 1.5 ms and 3 x 201 at 3 ms from ::1, 2 x 404
-- at 0.5 ms from ::2; key2 500 at 250 ms from ::2 and 302 at 0.25 ms from
-- ::3; no key 2 x 503 at 1000 ms without an address and 101 at 0 ms from
-- ::3.
CREATE TABLE regress.usage_in (status int, latency_ms real, k text, ip int, n int);
INSERT INTO regress.usage_in VALUES
    (200, 1.5, 'key1', 1, 5), (201, 3, 'key1', 1, 3), (404, 0.5, 'key1', 2, 2),
    (500, 250, 'key2', 2, 1), (302, 0.25, 'key2', 3, 1),
    (503, 1000, NULL, NULL, 2), (101, 0, NULL, 3, 1);
SELECT count(*) AS recorded
  FROM (SELECT authx.usage_record(:'ep', i.status, i.latency_ms,
                                  CASE i.k WHEN 'key1' THEN :'key1'::uuid WHEN 'key2' THEN :'key2'::uuid END,
                                  NULL, :'pre'::inet + i.ip)
          FROM regress.usage_in i, generate_series(1, i.n) OFFSET 0) s;
SELECT regress.usage_wait(:'ep', 15) AS written;
-- The raw rows.
SELECT status, latency_ms, CASE api_key_id WHEN :'key1' THEN 'key1' WHEN :'key2' THEN 'key2' END AS key,
       user_id, ip - :'pre'::inet AS ip, masklen(ip) AS masklen, count(*)
  FROM authx.usage_log WHERE endpoint = :'ep'
 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2;
-- Hourly rollups, summed over hours: per status class and key (the nil
-- uuid for none), requests, latency sum and histogram.
SELECT status_class, CASE api_key_id WHEN :'key1' THEN 'key1' WHEN :'key2' THEN 'key2'
                                     WHEN '00000000-0000-0000-0000-000000000000' THEN 'nil' END AS key,
       sum(requests) AS requests, sum(latency_sum_ms) AS latency_sum_ms,
       regress.hist_nz(authx._hist_sum(latency_hist)) AS histogram,
       bool_and(hour = date_trunc('hour', hour, 'UTC')) AS whole_hours
  FROM authx.usage_hourly WHERE endpoint = :'ep'
 GROUP BY 1, 2 ORDER BY 1, 2;
-- Per address: requests and errors (status 400 and up).
SELECT ip - :'pre'::inet AS ip, sum(requests) AS requests, sum(errors) AS errors
  FROM authx.usage_hourly_ip WHERE ip <<= (:'pre' || '/64')::inet
 GROUP BY 1 ORDER BY 1;
-- The summary of key1 (the endpoint masked) and key2.
SELECT k, s->'requests' AS requests, s->'errors_4xx' AS errors_4xx, s->'errors_5xx' AS errors_5xx,
       s->'error_rate' AS error_rate, s->'latency_ms' AS latency_ms
  FROM (VALUES ('key1', authx.usage_summary('2 hours', :'key1')), ('key2', authx.usage_summary(api_key_id => :'key2'))) v(k, s);
SELECT k, replace((s->'top_endpoints')::text, :'ep', '<ep>') AS top_endpoints,
       s->'top_keys'->0->'requests' AS key_requests, s->'top_keys'->0->>'api_key_id' = id AS key_is_it,
       jsonb_array_length(s->'top_keys') AS keys, s->'top_ips' AS top_ips,
       (SELECT sum((e->>'requests')::int) FROM jsonb_array_elements(s->'series') e) AS series_requests,
       jsonb_array_length(s->'series') BETWEEN 1 AND 2 AS series_hours
  FROM (VALUES ('key1', :'key1', authx.usage_summary('2 hours', :'key1')),
               ('key2', :'key2', authx.usage_summary(api_key_id => :'key2'))) v(k, id, s);

-- ================================================================ bounds and the metrics sum
-- 0 and 1e9 ms are accepted.  metrics() counts each call in its histogram
-- and adds llround(latency * 1000) us to _sum: 0.0625 ms is 63 us and
-- 0.1875 ms 188 (halves away from zero), 1e9 ms 1e12 us.
CREATE FUNCTION regress.metric(p_name text) RETURNS numeric
LANGUAGE sql AS $$
    SELECT split_part(l, ' ', 2)::numeric FROM regexp_split_to_table(authx.metrics(), E'\n') l
     WHERE split_part(l, ' ', 1) = p_name
$$;
SELECT regress.metric('authx_request_duration_seconds_sum') AS sum0,
       regress.metric('authx_request_duration_seconds_count') AS count0,
       regress.metric('authx_usage_recorded_total') AS recorded0 \gset
SELECT count(*) AS recorded
  FROM (SELECT authx.usage_record(:'ep' || ' bounds', 200, l) FROM unnest('{0, 0.0625, 0.1875, 1e9}'::real[]) l OFFSET 0) s;
SELECT regress.metric('authx_request_duration_seconds_sum') - :sum0 AS sum_seconds,
       regress.metric('authx_request_duration_seconds_count') - :count0 AS count,
       regress.metric('authx_usage_recorded_total') - :recorded0 AS usage_recorded;
SELECT regress.usage_wait(:'ep' || ' bounds', 4) AS written;
SELECT latency_ms, regress.hist_nz(authx._latency_hist(ARRAY[latency_ms])) AS bucket
  FROM authx.usage_log WHERE endpoint = :'ep' || ' bounds' ORDER BY 1;

-- ================================================================ clean up
DROP FUNCTION regress.metric(text);
DROP TABLE regress.usage_in;
DROP FUNCTION regress.hist_nz(bigint[]);
DROP FUNCTION regress.usage_wait(text, bigint);
