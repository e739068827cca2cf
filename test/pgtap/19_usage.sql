-- 19_usage.sql — usage analytics and monitoring, end to end.
--
-- Covers:
--   * usage_record's checks with their SQLSTATEs and messages: NULL
--     endpoint, status or latency (22004); an endpoint of 0 or 129 bytes
--     (22023; 128 bytes accepted, counted in bytes: 126 characters of 128
--     bytes accepted, 127 characters of 129 bytes refused); a status of 99
--     or 600 (22023; 100 and 599 accepted); a latency of -1, -0.001, NaN,
--     Infinity, -Infinity, 1e10 or 1000000064 (the next real above 1e9)
--     (22023, "latency_ms must be between 0 and 1e9 milliseconds"; 0 and
--     1e9 accepted); refused calls are not counted;
--   * records are written by the maintenance worker, asynchronously: this
--     file runs READ COMMITTED and polls (pg_sleep(0.1), at most 10 s per
--     wait) until the rows are there; a record made in a rolled-back
--     subtransaction is written all the same;
--   * 2680 records with 14 endpoints, every status class, three API keys
--     and none, two users and none, 22 addresses (IPv4 and IPv6 with a
--     netmask, kept as given) and none: every raw row round-trips exactly,
--     at the time of the call;
--   * the rollups agree with the raw rows exactly: per hour, endpoint,
--     status class and key (nil uuid for none), requests and latency sum
--     (latencies multiples of 1/64 ms: sums are exact in any order), the
--     histogram is the histogram of the raw latencies, and also what the
--     documented bucket formula gives in SQL; every histogram has 96
--     buckets summing to its requests; usage_hourly_ip agrees with the raw
--     rows per hour and address (errors: status 400 and up), and has no
--     row for records without an address; usage_daily agrees with the raw
--     rows per UTC day (counts, sums, histograms); usage_hourly_total and
--     usage_daily are usage_hourly summed per hour and per day, over every
--     row (one statement each: one snapshot);
--   * _latency_hist: one value in the middle of each of buckets 1 .. 94,
--     one below 0.01 ms and one of 1e9 ms fill each of the 96 buckets once;
--     bucket edges: 0 and 0.0099 ms in bucket 0, 0.0118 in 1, 0.0119 in 2,
--     118000 in 94, 119000 and 1e9 in the last — and 0.01 ms, 0.02 ms and
--     0.04 ms (the lower bounds of buckets 1, 5 and 9) in their bucket, by
--     the rollups as by _latency_hist; edges are compared at float4
--     precision: the lower bound of every bucket 1 .. 95, as a real, is in
--     that bucket and the real just below it in the one before, by
--     _latency_hist, by the rollups of 190 such records and (below) by
--     metrics();
--   * _hist_quantile: a single value in bucket k gives the geometric middle
--     of bucket k (0.005 for bucket 0, the lower bound of the last bucket
--     for it); ranks (ceil(q * n)) on a three-bucket histogram, q 0 and 1;
--     NULL when empty; on the recorded data p50, p95, p99 are the middle
--     of the bucket of percentile_disc over the raw rows and within
--     2^(1/8) - 1 (9.05%) of it; _hist_add adds bucket by bucket, NULL is
--     empty; the aggregate _hist_sum sums, and is NULL over no rows;
--   * usage_summary for one API key, every field against the raw rows:
--     from, to, api_key_id, requests, errors_4xx, errors_5xx, error_rate,
--     latency mean, p50, p95, p99 and relative_error_bound, top_endpoints
--     (requests descending then endpoint, a tie included, limit 10, errors
--     and p95 each), top_keys (the key), top_ips null, series per hour;
--     for all keys, against the rollups read in the same statement:
--     requests, errors, error rate, quantiles, top_endpoints, top_keys (no
--     nil uuid), top_ips (limit 10, ties by address), series; a rollup 3
--     hours old counts for since 4 hours and not for 1 hour; since NULL
--     (22004), 0, 0.5 seconds, 999 milliseconds, negative, 401 days and 14
--     months (22023) are refused, 1 second and 400 days accepted;
--   * metrics(): every line is a HELP, TYPE or sample line, each TYPE
--     right after its HELP and once, every sample after its family's TYPE;
--     exactly the families of authx.stats (counters authx_<name>_total,
--     gauges authx_<name>, _us and _ms names in seconds) and the histogram
--     authx_request_duration_seconds; counters end in _total and gauges do
--     not; the usage counters and queue capacity equal authx.stats; the
--     histogram has 96 buckets, le from 1e-05 s growing by 2^(1/4) to
--     +Inf, cumulative counts, +Inf equal to _count, _count equal to
--     usage_recorded_total; over this file's records usage_recorded_total,
--     _count and every bucket grow exactly by what was recorded and _sum
--     exactly by llround(latency * 1000) us per record (halves away from
--     zero, 1e9 ms included);
--   * authx.stats: usage_recorded and usage_written grow by the records
--     accepted, usage_dropped does not, usage_queue_depth is back to 0,
--     usage_queue_capacity is authx.usage_queue_size; exactly these five
--     usage counters and gauges;
--   * _partitions_ahead: -1 without partitions, the furthest day
--     otherwise, other names ignored; for usage_log as its partitions say;
--   * health(): status ok and exactly the six checks, all ok, alerts
--     naming the raised alerts (this file's errors may raise error_rate:
--     it does not change the status), with the
--     worker's pid, empty queues, Redis configured and connected, usage_log
--     partitions at least authx.audit_premake days ahead;
--   * a full queue: with usage_log locked (a savepoint) the worker cannot
--     write, the ring fills, further records are dropped; usage_recorded
--     counts every call, dropped ones too (and so does the metrics
--     histogram), usage_dropped grows, the queue is full and the worker
--     holds one batch of 1 .. 10000 records taken out of the ring
--     (recorded = written + dropped + queued + that batch); health() is
--     failing with the usage queue full; once the lock goes the queue
--     drains and recorded = written + dropped exactly, usage_log holding the
--     written records;
--   * usage_log partitions reaching premake - 1 days ahead make health()
--     degraded;
--   * privileges: authx_app calls usage_record but not usage_summary,
--     metrics or health (42501); authx_admin calls all four.
-- Records outlive the transaction: endpoints carry a tag, keys and
-- addresses are unique to this run.
-- Today's partitions first, committed, and a running worker.
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT value FROM authx.stats WHERE name = 'maintenance_worker_pid') > 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT plan(145);

-- ================================================================ setup
CREATE TEMP TABLE cfg ON COMMIT DROP AS
SELECT 'u' || substr(md5(random()::text), 1, 10) AS tag,
       gen_random_uuid() AS k1, gen_random_uuid() AS k2, gen_random_uuid() AS k3,
       gen_random_uuid() AS u1, gen_random_uuid() AS u2,
       format('2001:db8:%s:%s::', to_hex((random() * 65535)::int), to_hex((random() * 65535)::int)) AS ip6,
       current_setting('authx.audit_premake')::int AS premake;
SELECT tag, k1, 'GET /' || tag || '/' AS ep FROM cfg \gset

-- This run's rows: all but the flood (a section of its own), and the bulk.
CREATE TEMP VIEW mine AS
SELECT u.* FROM authx.usage_log u, cfg c
 WHERE u.endpoint LIKE 'GET /' || c.tag || '/%' AND u.endpoint <> 'GET /' || c.tag || '/flood';
CREATE TEMP VIEW mine_bulk AS SELECT * FROM mine WHERE endpoint ~ '/e[0-9]{2}$';
CREATE TEMP VIEW mine_hourly AS
SELECT h.* FROM authx.usage_hourly h, cfg c WHERE h.endpoint LIKE 'GET /' || c.tag || '/%';

CREATE TEMP TABLE stats_before ON COMMIT DROP AS SELECT name, value FROM authx.stats;
CREATE FUNCTION pg_temp.stat(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT value FROM authx.stats WHERE name = p_name $$;
CREATE FUNCTION pg_temp.stat_delta(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT s.value - b.value FROM authx.stats s JOIN stats_before b USING (name) WHERE s.name = p_name $$;

-- The sample lines of a metrics() text: name (labels included) and value.
CREATE FUNCTION pg_temp.samples(p text) RETURNS TABLE(ord bigint, name text, value numeric) LANGUAGE sql AS
$$ SELECT o, split_part(l, ' ', 1), split_part(l, ' ', 2)::numeric
     FROM regexp_split_to_table(p, E'\n') WITH ORDINALITY AS t(l, o)
    WHERE l <> '' AND l !~ '^#' $$;
CREATE FUNCTION pg_temp.sample(p text, p_name text) RETURNS numeric LANGUAGE sql AS
$$ SELECT value FROM pg_temp.samples(p) WHERE name = p_name $$;
CREATE TEMP TABLE m0 ON COMMIT DROP AS SELECT authx.metrics() AS m;

-- Wait (at most p_seconds) until p_query counts at least p_n; returns the
-- last count.  Each statement sees the worker's latest commit.
CREATE FUNCTION pg_temp.wait_count(p_query text, p_n bigint, p_seconds int DEFAULT 10) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    FOR i IN 1..p_seconds * 10 LOOP
        EXECUTE p_query INTO n;
        EXIT WHEN n >= p_n;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN n;
END
$$;

-- The documented bucket of a latency in ms, computed in SQL.
CREATE FUNCTION pg_temp.bucket(ms double precision) RETURNS int LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN ms < 0.01 THEN 0 ELSE least(floor(log(2.0, (ms / 0.01)::numeric) * 4)::int + 1, 95) END $$;
-- The lower bound of bucket k (1 .. 95) as a real, as usage_record gets it,
-- and the real just below it (x * (1 - 2^-24) is exact in float8 and rounds
-- to the previous float4).
CREATE FUNCTION pg_temp.edge(k int) RETURNS real LANGUAGE sql IMMUTABLE AS
$$ SELECT (0.01::float8 * 2::float8 ^ ((k - 1)::float8 / 4))::real $$;
CREATE FUNCTION pg_temp.below(x real) RETURNS real LANGUAGE sql IMMUTABLE AS
$$ SELECT (x::float8 * (1 - 2::float8 ^ -24))::real $$;
-- What metrics() adds to _sum for a latency: llround(latency * 1000) us.
-- latency * 1000 and + 0.5 are exact in float8 here (a real times 1000):
-- floor(x + 0.5) is llround(x) for x >= 0.
CREATE FUNCTION pg_temp.us(x real) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT floor(x::float8 * 1000 + 0.5)::bigint $$;
-- The geometric middle of bucket k, what _hist_quantile answers.
CREATE FUNCTION pg_temp.mid(k int) RETURNS double precision LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN k = 0 THEN 0.005 WHEN k = 95 THEN 0.01 * 2 ^ (94 / 4.0) ELSE 0.01 * 2 ^ ((2 * k - 1) / 8.0) END $$;
-- A histogram with the given counts in the given buckets.
CREATE FUNCTION pg_temp.hist(p_buckets int[], p_counts bigint[]) RETURNS bigint[] LANGUAGE sql IMMUTABLE AS
$$ SELECT array_agg(coalesce(c.n, 0) ORDER BY k)
     FROM generate_series(0, 95) k
     LEFT JOIN unnest(p_buckets, p_counts) AS c(b, n) ON c.b = k $$;
-- Non-empty buckets of a histogram as {bucket: count}.
CREATE FUNCTION pg_temp.nz(h bigint[]) RETURNS jsonb LANGUAGE sql IMMUTABLE AS
$$ SELECT coalesce(jsonb_object_agg(k - 1, h[k] ORDER BY k), '{}') FROM generate_subscripts(h, 1) k WHERE h[k] <> 0 $$;

-- ================================================================ argument checks
-- NULL arguments raise 22004 (null_value_not_allowed), as everywhere in authx.
SELECT throws_ok($$SELECT authx.usage_record(NULL, 200, 1)$$, '22004',
                 'endpoint, status and latency_ms must not be null', 'NULL endpoint: 22004');
SELECT throws_ok($$SELECT authx.usage_record('GET /x', NULL, 1)$$, '22004',
                 'endpoint, status and latency_ms must not be null', 'NULL status: 22004');
SELECT throws_ok($$SELECT authx.usage_record('GET /x', 200, NULL)$$, '22004',
                 'endpoint, status and latency_ms must not be null', 'NULL latency: 22004');
SELECT throws_ok($$SELECT authx.usage_record('', 200, 1)$$, '22023', 'endpoint must have 1 to 128 bytes',
                 'empty endpoint: 22023');
SELECT throws_ok(format('SELECT authx.usage_record(%L, 200, 1)', rpad(:'ep', 129, 'x')), '22023',
                 'endpoint must have 1 to 128 bytes', '129-byte endpoint: 22023');
SELECT throws_ok(format('SELECT authx.usage_record(%L, 200, 1)', rpad(:'ep', 125, 'y') || 'éé'), '22023',
                 'endpoint must have 1 to 128 bytes', '127 characters of 129 bytes: 22023 (bytes count)');
SELECT throws_ok(format('SELECT authx.usage_record(%L, %s, 1)', :'ep' || 'bounds', s), '22023',
                 'status must be an HTTP status between 100 and 599', format('status %s: 22023', s))
  FROM unnest(ARRAY[99, 600, 0, -200]) s;
SELECT throws_ok(format('SELECT authx.usage_record(%L, 200, %L)', :'ep' || 'bounds', l), '22023',
                 'latency_ms must be between 0 and 1e9 milliseconds', format('latency %s: 22023', l))
  FROM unnest(ARRAY['-1', '-0.001', 'NaN', 'Infinity', '-Infinity', '1e10', '1000000064']) l;
-- Accepted at the bounds (written below; latencies 0 and 1e9 among the
-- edge records).
SELECT lives_ok(format('SELECT authx.usage_record(%L, 200, 1)', rpad(:'ep', 128, 'x')), '128-byte endpoint accepted');
SELECT lives_ok(format('SELECT authx.usage_record(%L, 200, 1)', rpad(:'ep', 124, 'y') || 'éé'),
                '126 characters of 128 bytes accepted');
SELECT lives_ok(format('SELECT authx.usage_record(%L, 100, 0.5), authx.usage_record(%L, 599, 0.5)',
                       :'ep' || 'bounds', :'ep' || 'bounds'),
                'status 100 and 599 accepted');
SELECT is(pg_temp.stat_delta('usage_recorded'), 4::bigint, 'usage_recorded counts the 4 accepted calls, no refused one');

-- ================================================================ privileges
SET ROLE authx_app;
SELECT lives_ok(format($$SELECT authx.usage_record(%L, 201, 2.5, %L, NULL, '192.0.2.1')$$, :'ep' || 'app', :'k1'),
                'app: usage_record works');
SELECT throws_ok(c, '42501', NULL, 'app: cannot ' || c)
  FROM unnest(ARRAY['SELECT authx.usage_summary()', 'SELECT authx.metrics()', 'SELECT authx.health()']) c;
RESET ROLE;
SET ROLE authx_admin;
SELECT lives_ok(format($$SELECT authx.usage_record(%L, 204, 0.25)$$, :'ep' || 'admin'),
                'admin inherits authx_app: usage_record works');
SELECT lives_ok(c, 'admin: ' || c)
  FROM unnest(ARRAY['SELECT authx.usage_summary()', 'SELECT authx.metrics()', 'SELECT authx.health()']) c;
RESET ROLE;

-- ================================================================ records
-- 14 endpoints of 400 .. 40 requests (e03 and e04 tie); the key by the
-- row's place in its endpoint (so every key's counts tie for e03 and e04);
-- status, user, address and latency by the row number.  Latencies from
-- 0.05 to 5000 ms, rounded to 1/64 ms (exact as real, sums exact).
CREATE TEMP TABLE usage_data ON COMMIT DROP AS
SELECT d.n, d.j, format('GET /%s/e%s', c.tag, lpad(d.j::text, 2, '0')) AS endpoint,
       CASE d.n % 20 WHEN 0 THEN 500 WHEN 1 THEN 503 WHEN 2 THEN 404 WHEN 3 THEN 404 WHEN 4 THEN 429
                     WHEN 5 THEN 301 WHEN 6 THEN 101 WHEN 7 THEN 201 WHEN 8 THEN 599 WHEN 9 THEN 100
                     ELSE 200 END AS status,
       (round(exp(ln(0.05) + ln(100000) * (d.n * 0.6180339887498949 - floor(d.n * 0.6180339887498949))) * 64) / 64)::real
           AS latency,
       CASE d.r % 7 WHEN 0 THEN c.k1 WHEN 1 THEN c.k1 WHEN 2 THEN c.k1 WHEN 3 THEN c.k2 WHEN 4 THEN c.k2
                    WHEN 5 THEN c.k3 END AS api_key_id,
       CASE d.n % 3 WHEN 1 THEN c.u1 WHEN 2 THEN c.u2 END AS user_id,
       CASE d.n % 23 WHEN 0 THEN NULL WHEN 1 THEN inet '203.0.113.77/24' WHEN 2 THEN (c.ip6 || '2/64')::inet
                     ELSE (c.ip6 || to_hex(d.n % 23))::inet END AS ip
  FROM cfg c,
       (SELECT row_number() OVER (ORDER BY e.j, r.r) AS n, e.j, r.r
          FROM (VALUES (1, 400), (2, 350), (3, 300), (4, 300), (5, 250), (6, 200), (7, 180), (8, 160), (9, 140),
                       (10, 120), (11, 100), (12, 80), (13, 60), (14, 40)) e(j, cnt),
               generate_series(1, e.cnt) r(r)) d;

SELECT clock_timestamp() AS t_before \gset
SELECT is((SELECT count(*) FROM (SELECT authx.usage_record(endpoint, status, latency, api_key_id, user_id, ip)
                                   FROM usage_data ORDER BY n OFFSET 0) s),
          2680::bigint, '2680 records made');
SELECT clock_timestamp() AS t_after \gset
-- Bucket edges (ms): 2xx below 1 ms, 5xx above.
SELECT is((SELECT count(*) FROM (SELECT authx.usage_record(:'ep' || 'edges', s, l)
                                   FROM (VALUES (200, 0::real), (200, 0.0099), (200, 0.01), (200, 0.0118),
                                                (200, 0.0119), (200, 0.02), (200, 0.04),
                                                (500, 118000), (500, 119000), (500, 1e9)) v(s, l) OFFSET 0) s),
          10::bigint, '10 records at bucket edges made (0 and 1e9 ms accepted)');
-- Every bucket's lower bound and the real just below it: 2xx up to bucket
-- 48, 5xx above (each status class sums exactly in float8).
SELECT is((SELECT count(*) FROM (SELECT authx.usage_record(:'ep' || 'alledges', CASE WHEN k <= 48 THEN 200 ELSE 500 END, l)
                                   FROM generate_series(1, 95) k,
                                        LATERAL (VALUES (pg_temp.edge(k)), (pg_temp.below(pg_temp.edge(k)))) v(l)
                                 OFFSET 0) s),
          190::bigint, '190 records at the lower bound of each bucket 1 .. 95 and just below it made');
SAVEPOINT before_rollback;
SELECT authx.usage_record(:'ep' || 'rolledback', 200, 1) AS rolledback \gset
ROLLBACK TO SAVEPOINT before_rollback;

-- 4 bounds + app + admin + 2680 + 10 + 190 edges + the rolled-back one = 2887.
SELECT is(pg_temp.wait_count('SELECT count(*) FROM mine', 2887), 2887::bigint,
          'the worker writes all 2887 records (within 10 s)');
-- (usage_written is counted just after the commit.)
SELECT pg_temp.wait_count($$SELECT pg_temp.stat_delta('usage_written')$$, 2887) AS written \gset
SELECT is((SELECT count(*) FROM mine WHERE endpoint = :'ep' || 'rolledback')::int, 1,
          'a record made in a rolled-back subtransaction is written all the same');

-- ================================================================ raw rows
SELECT bag_eq(
    'SELECT endpoint, status::int, latency_ms, api_key_id, user_id, ip FROM mine_bulk',
    'SELECT endpoint, status, latency, api_key_id, user_id, ip FROM usage_data',
    'raw rows: endpoint, status, latency, key, user and address round-trip exactly (netmasks kept)');
SELECT ok((SELECT bool_and(at BETWEEN :'t_before'::timestamptz AND :'t_after'::timestamptz) FROM mine_bulk),
          'raw rows: at is the time of the call');
SELECT results_eq(
    $$SELECT endpoint, status::int, latency_ms, api_key_id, user_id, ip FROM mine
       WHERE endpoint !~ '/e[0-9]{2}$' AND endpoint !~ '/(all)?edges$' ORDER BY endpoint, status$$,
    format($$VALUES (%L, 204, 0.25::real, NULL::uuid, NULL::uuid, NULL::inet),
                    (%L, 201, 2.5, %L, NULL, '192.0.2.1'),
                    (%L, 100, 0.5, NULL, NULL, NULL), (%L, 599, 0.5, NULL, NULL, NULL),
                    (%L, 200, 1, NULL, NULL, NULL), (%L, 200, 1, NULL, NULL, NULL), (%L, 200, 1, NULL, NULL, NULL)$$,
           :'ep' || 'admin', :'ep' || 'app', :'k1', :'ep' || 'bounds', :'ep' || 'bounds', :'ep' || 'rolledback',
           rpad(:'ep', 128, 'x'), rpad(:'ep', 124, 'y') || 'éé'),
    'raw rows: the app, admin, bound and rolled-back records, the 128-byte endpoints');

-- ================================================================ rollups
SELECT set_eq(
    $$SELECT hour, endpoint, status_class::int, api_key_id, requests, latency_sum_ms FROM mine_hourly$$,
    $$SELECT date_trunc('hour', at, 'UTC'), endpoint, status / 100, coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'),
             count(*), sum(latency_ms::float8)
        FROM mine GROUP BY 1, 2, 3, 4$$,
    'usage_hourly: per hour, endpoint, status class and key (nil uuid for none), requests and latency sum '
    'are exactly those of the raw rows');
SELECT set_eq(
    $$SELECT hour, endpoint, status_class, api_key_id, latency_hist FROM mine_hourly$$,
    $$SELECT date_trunc('hour', at, 'UTC'), endpoint, (status / 100)::smallint,
             coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'), authx._latency_hist(array_agg(latency_ms))
        FROM mine GROUP BY 1, 2, 3, 4$$,
    'usage_hourly: each histogram is the histogram of the raw latencies');
SELECT is((SELECT authx._hist_sum(latency_hist) FROM mine_hourly WHERE endpoint ~ '/e[0-9]{2}$'),
          (SELECT pg_temp.hist(array_agg(b), array_agg(n))
             FROM (SELECT pg_temp.bucket(latency) AS b, count(*) AS n FROM usage_data GROUP BY 1) x),
          'the bulk histograms sum to the documented buckets of the latencies, computed in SQL');
SELECT is_empty(
    $$SELECT hour, endpoint, status_class, api_key_id FROM authx.usage_hourly
       WHERE cardinality(latency_hist) <> 96 OR array_ndims(latency_hist) <> 1
          OR (SELECT sum(x) FROM unnest(latency_hist) x) <> requests OR array_position(latency_hist, NULL) IS NOT NULL$$,
    'every usage_hourly histogram has 96 buckets, no NULL, summing to its requests');
SELECT set_eq(
    $$SELECT h.hour, h.ip, h.requests, h.errors FROM authx.usage_hourly_ip h
       WHERE h.ip IN (SELECT ip FROM mine)$$,
    $$SELECT date_trunc('hour', at, 'UTC') AS hour, ip, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors
        FROM authx.usage_log WHERE ip IN (SELECT ip FROM mine) GROUP BY 1, 2$$,
    'usage_hourly_ip: per hour and address, requests and errors (status 400 and up) are those of the raw rows');
SELECT is((SELECT count(DISTINCT ip)::int FROM mine), 23, 'the records used 23 distinct addresses');
SELECT is_empty('SELECT * FROM authx.usage_hourly_ip WHERE ip IS NULL', 'usage_hourly_ip has no row for no address');
SELECT set_eq(
    $$SELECT d.day, d.endpoint, d.status_class::int, d.api_key_id, d.requests, d.latency_sum_ms, d.latency_hist
        FROM authx.usage_daily d, cfg c WHERE d.endpoint LIKE 'GET /' || c.tag || '/%'
         AND d.endpoint <> 'GET /' || c.tag || '/flood'$$,
    $$SELECT (at AT TIME ZONE 'UTC')::date, endpoint, status / 100,
             coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'), count(*), sum(latency_ms::float8),
             authx._latency_hist(array_agg(latency_ms))
        FROM mine GROUP BY 1, 2, 3, 4$$,
    'usage_daily: per UTC day, endpoint, status class and key, requests, latency sum and histogram are those of '
    'the raw rows');
-- The coarser rollups against usage_hourly, all of them, in one statement
-- each (one snapshot: the worker commits all four in the same transaction);
-- latency sums within 1e-9 (other files' latencies are not all exact
-- binary fractions, and the sums are added in another order).
SELECT is_empty(
    $$WITH h AS (SELECT hour, sum(requests) AS requests,
                        coalesce(sum(requests) FILTER (WHERE status_class = 4), 0) AS e4,
                        coalesce(sum(requests) FILTER (WHERE status_class = 5), 0) AS e5,
                        sum(latency_sum_ms) AS lat, authx._hist_sum(latency_hist) AS hist
                   FROM authx.usage_hourly GROUP BY hour)
      SELECT h.hour, t.hour FROM h FULL JOIN authx.usage_hourly_total t USING (hour)
       WHERE h.requests IS DISTINCT FROM t.requests OR h.e4 IS DISTINCT FROM t.errors_4xx
          OR h.e5 IS DISTINCT FROM t.errors_5xx OR h.hist IS DISTINCT FROM t.latency_hist
          OR NOT abs(h.lat - t.latency_sum_ms) <= 1e-9 * greatest(1, abs(h.lat))$$,
    'usage_hourly_total: per hour, the requests, 4xx, 5xx, latency sum and histogram of usage_hourly summed');
SELECT is_empty(
    $$WITH h AS (SELECT (hour AT TIME ZONE 'UTC')::date AS day, endpoint, status_class, api_key_id,
                        sum(requests) AS requests, sum(latency_sum_ms) AS lat, authx._hist_sum(latency_hist) AS hist
                   FROM authx.usage_hourly GROUP BY 1, 2, 3, 4)
      SELECT h.day, d.day FROM h FULL JOIN authx.usage_daily d USING (day, endpoint, status_class, api_key_id)
       WHERE h.requests IS DISTINCT FROM d.requests OR h.hist IS DISTINCT FROM d.latency_hist
          OR NOT abs(h.lat - d.latency_sum_ms) <= 1e-9 * greatest(1, abs(h.lat))$$,
    'usage_daily: per day, the groups of usage_hourly summed');

-- ================================================================ buckets
SELECT is(authx._latency_hist(ARRAY[0.001]::real[] || array_agg((0.01 * 2 ^ ((k - 0.5) / 4))::real) || ARRAY[1e9]::real[]),
          array_fill(1::bigint, ARRAY[96]),
          '_latency_hist: below 0.01 ms, the middle of each of buckets 1 .. 94 and 1e9 ms fill each bucket once')
  FROM generate_series(1, 94) k;
SELECT is(pg_temp.nz(authx._latency_hist(ARRAY[0, 0.0099, 0.0118, 0.0119, 118000, 119000, 1e9, 'Infinity']::real[])),
          '{"0": 2, "1": 1, "2": 1, "94": 1, "95": 3}'::jsonb,
          '_latency_hist: 0 and 0.0099 in bucket 0, 0.0118 in 1, 0.0119 in 2, 118000 in 94, 119000, 1e9 and '
          'Infinity in the last');
SELECT is(pg_temp.nz(authx._latency_hist(ARRAY[0.01, 0.02, 0.04]::real[])), '{"1": 1, "5": 1, "9": 1}'::jsonb,
          '_latency_hist: 0.01, 0.02 and 0.04 ms, the lower bounds of buckets 1, 5 and 9, are in them');
SELECT is(pg_temp.nz((SELECT authx._hist_sum(latency_hist) FROM mine_hourly WHERE endpoint = :'ep' || 'edges')),
          '{"0": 2, "1": 2, "2": 1, "5": 1, "9": 1, "94": 1, "95": 2}'::jsonb,
          'rollups of the edge records: 0, 0.0099 in bucket 0; 0.01, 0.0118 in 1; 0.0119 in 2; 0.02 in 5; 0.04 in 9; '
          '118000 in 94; 119000, 1e9 in 95');
SELECT is(authx._latency_hist((SELECT array_agg(pg_temp.edge(k)) FROM generate_series(1, 95) k)),
          0::bigint || array_fill(1::bigint, ARRAY[95]),
          '_latency_hist: the lower bound of each bucket 1 .. 95 (as a real) is in that bucket');
SELECT is(authx._latency_hist((SELECT array_agg(pg_temp.below(pg_temp.edge(k))) FROM generate_series(1, 95) k)),
          array_fill(1::bigint, ARRAY[95]) || 0::bigint,
          '_latency_hist: the real just below the lower bound of bucket k is in bucket k - 1');
SELECT is((SELECT authx._hist_sum(latency_hist) FROM mine_hourly WHERE endpoint = :'ep' || 'alledges'),
          1::bigint || array_fill(2::bigint, ARRAY[94]) || 1::bigint,
          'rollups of the 190 edge records: each bucket 1 .. 94 holds its lower bound and the real below the next, '
          'bucket 0 the real below 0.01 ms, bucket 95 its lower bound');
SELECT is(pg_temp.nz(authx._latency_hist('{}'::real[])), '{}'::jsonb, '_latency_hist of nothing is all zeros');
SELECT is(authx._latency_hist('{}'::real[]), array_fill(0::bigint, ARRAY[96]), '_latency_hist of nothing has 96 buckets');

-- ================================================================ quantiles
SELECT is_empty(
    $$SELECT k FROM generate_series(0, 95) k
       WHERE abs(authx._hist_quantile(pg_temp.hist(ARRAY[k], ARRAY[1::bigint]), 0.5) / pg_temp.mid(k) - 1) > 1e-12$$,
    '_hist_quantile of one value in bucket k is its geometric middle (0.005 for bucket 0, the lower bound of the last)');
SELECT is((SELECT array_agg(pg_temp.bucket(authx._hist_quantile(h, q)) ORDER BY o)
             FROM unnest(ARRAY[0, 0.5, 0.5000001, 0.95, 0.9500001, 0.99, 1]::float8[]) WITH ORDINALITY u(q, o)),
          ARRAY[10, 10, 20, 20, 30, 30, 30],
          '_hist_quantile ranks ceil(q * n): 50 / 45 / 5 values in buckets 10 / 20 / 30, q 0 .. 1')
  FROM (SELECT pg_temp.hist(ARRAY[10, 20, 30], ARRAY[50, 45, 5]::bigint[]) AS h) x;
SELECT is(authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 0.5), NULL, '_hist_quantile of an empty histogram is NULL');
SELECT is(authx._hist_quantile(NULL, 0.5), NULL, '_hist_quantile(NULL, q) is NULL (STRICT)');
SELECT is(authx._hist_add(pg_temp.hist(ARRAY[0, 95], ARRAY[1, 2]::bigint[]), pg_temp.hist(ARRAY[95, 3], ARRAY[5, 7]::bigint[])),
          pg_temp.hist(ARRAY[0, 3, 95], ARRAY[1, 7, 7]::bigint[]), '_hist_add adds bucket by bucket');
SELECT is(ARRAY[authx._hist_add(NULL, pg_temp.hist(ARRAY[4], ARRAY[1::bigint])),
                authx._hist_add(pg_temp.hist(ARRAY[4], ARRAY[1::bigint]), NULL), authx._hist_add(NULL, NULL)],
          ARRAY[pg_temp.hist(ARRAY[4], ARRAY[1::bigint]), pg_temp.hist(ARRAY[4], ARRAY[1::bigint]),
                array_fill(0::bigint, ARRAY[96])],
          '_hist_add: NULL is an empty histogram');
SELECT is((SELECT authx._hist_sum(h) FROM (VALUES (pg_temp.hist(ARRAY[1], ARRAY[1::bigint])), (NULL),
                                                  (pg_temp.hist(ARRAY[1, 2], ARRAY[2, 3]::bigint[]))) v(h)),
          pg_temp.hist(ARRAY[1, 2], ARRAY[3, 3]::bigint[]), '_hist_sum sums histograms (NULL counts as empty)');
SELECT is((SELECT authx._hist_sum(h) FROM (VALUES (NULL::bigint[])) v(h) WHERE false), NULL, '_hist_sum over no rows is NULL');
-- The recorded data: the estimate is the middle of the true value's bucket.
CREATE TEMP TABLE qs ON COMMIT DROP AS
SELECT q, (SELECT percentile_disc(q) WITHIN GROUP (ORDER BY latency_ms) FROM mine_bulk)::float8 AS truth,
       authx._hist_quantile((SELECT authx._hist_sum(latency_hist) FROM mine_hourly WHERE endpoint ~ '/e[0-9]{2}$'), q)
           AS est
  FROM unnest(ARRAY[0.5, 0.95, 0.99]::float8[]) q;
SELECT is_empty($$SELECT * FROM qs WHERE abs(est / pg_temp.mid(pg_temp.bucket(truth)) - 1) > 1e-12$$,
                'rollups: p50, p95, p99 are the geometric middle of the bucket of percentile_disc over the raw rows');
SELECT is_empty($$SELECT * FROM qs WHERE abs(est - truth) / truth > 2 ^ (1 / 8.0) - 1 OR est IS NULL$$,
                'rollups: p50, p95, p99 are within 2^(1/8) - 1 = 9.05% of percentile_disc over the raw rows');

-- ================================================================ usage_summary, one key
-- Against the raw rows of k1 (all in the window: they are newer than now()).
CREATE TEMP TABLE s1 ON COMMIT DROP AS SELECT authx.usage_summary(api_key_id => :'k1') AS s;
CREATE TEMP TABLE r1 ON COMMIT DROP AS SELECT * FROM mine WHERE api_key_id = :'k1';
SELECT is((SELECT s->>'api_key_id' FROM s1), :'k1', 'summary(k1): api_key_id');
SELECT is((SELECT ARRAY[(s->>'from')::timestamptz, (s->>'to')::timestamptz] FROM s1),
          ARRAY[date_trunc('hour', now() - interval '24 hours', 'UTC'), now()],
          'summary(k1): from the start of the hour 24 hours ago (UTC) to now()');
SELECT is((SELECT ARRAY[(s->>'requests')::bigint, (s->>'errors_4xx')::bigint, (s->>'errors_5xx')::bigint] FROM s1),
          (SELECT ARRAY[count(*), count(*) FILTER (WHERE status BETWEEN 400 AND 499),
                        count(*) FILTER (WHERE status BETWEEN 500 AND 599)] FROM r1),
          'summary(k1): requests, errors_4xx, errors_5xx');
SELECT is((SELECT (s->>'error_rate')::numeric FROM s1),
          (SELECT round(count(*) FILTER (WHERE status >= 400)::numeric / count(*), 4) FROM r1),
          'summary(k1): error_rate, rounded to 4 places');
SELECT is((SELECT s->'latency_ms' FROM s1),
          (SELECT jsonb_build_object('mean', round((t / n)::numeric, 3),
                                     'p50', round(authx._hist_quantile(h, 0.5)::numeric, 3),
                                     'p95', round(authx._hist_quantile(h, 0.95)::numeric, 3),
                                     'p99', round(authx._hist_quantile(h, 0.99)::numeric, 3),
                                     'relative_error_bound', 0.0905)
             FROM (SELECT sum(latency_ms::float8) AS t, count(*) AS n, authx._latency_hist(array_agg(latency_ms)) AS h
                     FROM r1) x),
          'summary(k1): latency mean, p50, p95, p99 (of the raw latencies'' buckets) and the error bound');
SELECT ok((SELECT bool_and(abs((s->'latency_ms'->>p)::float8 - t) <= (2 ^ (1 / 8.0) - 1) * t + 0.0005)
             FROM s1, (SELECT p, percentile_disc(q) WITHIN GROUP (ORDER BY latency_ms)::float8 AS t
                         FROM r1, (VALUES ('p50', 0.5::float8), ('p95', 0.95), ('p99', 0.99)) v(p, q) GROUP BY p, q) x),
          'summary(k1): p50, p95, p99 within 9.05% of percentile_disc (plus the rounding to 0.001 ms)');
SELECT is((SELECT s->'top_endpoints' FROM s1),
          (SELECT jsonb_agg(jsonb_build_object('endpoint', endpoint, 'requests', n, 'errors', e,
                                               'p95_ms', round(authx._hist_quantile(h, 0.95)::numeric, 3))
                            ORDER BY n DESC, endpoint)
             FROM (SELECT endpoint, count(*) AS n, count(*) FILTER (WHERE status >= 400) AS e,
                          authx._latency_hist(array_agg(latency_ms)) AS h
                     FROM r1 GROUP BY endpoint ORDER BY 2 DESC, 1 LIMIT 10) x),
          'summary(k1): top_endpoints, the 10 busiest (requests, errors, p95 each), busiest first');
SELECT is((SELECT array_agg(right(e->>'endpoint', 3) ORDER BY o) FROM s1, jsonb_array_elements(s->'top_endpoints')
                                                                     WITH ORDINALITY AS t(e, o)),
          ARRAY['e01', 'e02', 'e03', 'e04', 'e05', 'e06', 'e07', 'e08', 'e09', 'e10'],
          'summary(k1): top_endpoints e01 .. e10 in order, the tie e03 / e04 broken by endpoint, e11 .. e14 left out');
SELECT is((SELECT (e->>'requests')::int FROM s1, jsonb_array_elements(s->'top_endpoints') e WHERE e->>'endpoint' LIKE '%/e03'),
          (SELECT (e->>'requests')::int FROM s1, jsonb_array_elements(s->'top_endpoints') e WHERE e->>'endpoint' LIKE '%/e04'),
          'summary(k1): e03 and e04 do tie');
SELECT is((SELECT s->'top_keys' FROM s1),
          (SELECT jsonb_build_array(jsonb_build_object('api_key_id', :'k1'::uuid, 'requests', count(*),
                                                       'errors', count(*) FILTER (WHERE status >= 400))) FROM r1),
          'summary(k1): top_keys is the key alone');
SELECT is((SELECT jsonb_typeof(s->'top_ips') FROM s1), 'null', 'summary(k1): top_ips is null for one key');
SELECT is((SELECT s->'series' FROM s1),
          (SELECT jsonb_agg(jsonb_build_object('hour', hour, 'requests', n, 'errors_4xx', e4, 'errors_5xx', e5,
                                               'p50_ms', round(authx._hist_quantile(h, 0.50)::numeric, 3),
                                               'p95_ms', round(authx._hist_quantile(h, 0.95)::numeric, 3),
                                               'p99_ms', round(authx._hist_quantile(h, 0.99)::numeric, 3))
                            ORDER BY hour)
             FROM (SELECT date_trunc('hour', at, 'UTC') AS hour, count(*) AS n,
                          count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS e4,
                          count(*) FILTER (WHERE status >= 500) AS e5, authx._latency_hist(array_agg(latency_ms)) AS h
                     FROM r1 GROUP BY 1) x),
          'summary(k1): series, one entry per hour with requests, errors and quantiles');
SELECT is(authx.usage_summary(api_key_id => gen_random_uuid()) - 'from' - 'to' - 'api_key_id',
          '{"requests": 0, "errors_4xx": 0, "errors_5xx": 0, "error_rate": 0, "top_keys": [], "top_ips": null,
            "series": [], "top_endpoints": [],
            "latency_ms": {"mean": null, "p50": null, "p95": null, "p99": null, "relative_error_bound": 0.0905}}'::jsonb,
          'summary of an unknown key: zeros, empty lists, null quantiles');

-- ================================================================ usage_summary, all keys
-- Against the rollups read in the same statement (other tests record too).
CREATE FUNCTION pg_temp.expect_all(p_since interval) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH h AS (SELECT * FROM authx.usage_hourly WHERE hour >= date_trunc('hour', now() - p_since, 'UTC'))
    SELECT jsonb_build_object(
        'requests', (SELECT coalesce(sum(requests), 0) FROM h),
        'errors_4xx', (SELECT coalesce(sum(requests), 0) FROM h WHERE status_class = 4),
        'errors_5xx', (SELECT coalesce(sum(requests), 0) FROM h WHERE status_class = 5),
        'p95', (SELECT round(authx._hist_quantile(authx._hist_sum(latency_hist), 0.95)::numeric, 3) FROM h),
        'top_endpoints', (SELECT jsonb_agg(jsonb_build_array(endpoint, n, e) ORDER BY n DESC, endpoint)
                            FROM (SELECT endpoint, sum(requests) AS n,
                                         coalesce(sum(requests) FILTER (WHERE status_class >= 4), 0) AS e
                                    FROM h GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) x),
        'top_keys', (SELECT jsonb_agg(jsonb_build_array(api_key_id, n) ORDER BY n DESC, api_key_id)
                       FROM (SELECT api_key_id, sum(requests) AS n FROM h
                              WHERE api_key_id <> '00000000-0000-0000-0000-000000000000'
                              GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) x),
        'top_ips', (SELECT jsonb_agg(jsonb_build_array(ip, n, e) ORDER BY n DESC, ip)
                      FROM (SELECT ip, sum(requests) AS n, sum(errors) AS e FROM authx.usage_hourly_ip
                             WHERE hour >= date_trunc('hour', now() - p_since, 'UTC') GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) x),
        'series', (SELECT jsonb_agg(jsonb_build_array(hour, n) ORDER BY hour)
                     FROM (SELECT hour, sum(requests) AS n FROM h GROUP BY 1) x))
$$;
-- The summary in the shape of expect_all.
CREATE FUNCTION pg_temp.shape(s jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'requests', s->'requests', 'errors_4xx', s->'errors_4xx', 'errors_5xx', s->'errors_5xx',
        'p95', s->'latency_ms'->'p95',
        'top_endpoints', (SELECT jsonb_agg(jsonb_build_array(e->'endpoint', e->'requests', e->'errors') ORDER BY o)
                            FROM jsonb_array_elements(s->'top_endpoints') WITH ORDINALITY t(e, o)),
        'top_keys', (SELECT jsonb_agg(jsonb_build_array(e->'api_key_id', e->'requests') ORDER BY o)
                       FROM jsonb_array_elements(s->'top_keys') WITH ORDINALITY t(e, o)),
        'top_ips', (SELECT jsonb_agg(jsonb_build_array(e->'ip', e->'requests', e->'errors') ORDER BY o)
                      FROM jsonb_array_elements(s->'top_ips') WITH ORDINALITY t(e, o)),
        'series', (SELECT jsonb_agg(jsonb_build_array(e->'hour', e->'requests') ORDER BY o)
                     FROM jsonb_array_elements(s->'series') WITH ORDINALITY t(e, o)))
$$;
CREATE TEMP TABLE sa ON COMMIT DROP AS
SELECT authx.usage_summary() AS s, pg_temp.expect_all('24 hours') AS x;
SELECT is((SELECT pg_temp.shape(s) FROM sa), (SELECT x FROM sa),
          'summary(all): requests, errors, p95, top_endpoints, top_keys, top_ips and series agree with the rollups');
SELECT is((SELECT (s->>'error_rate')::numeric FROM sa),
          (SELECT round(((s->>'errors_4xx')::numeric + (s->>'errors_5xx')::numeric) / (s->>'requests')::numeric, 4) FROM sa),
          'summary(all): error_rate is (4xx + 5xx) / requests');
SELECT ok((SELECT (s->>'requests')::bigint >= 2887 AND jsonb_typeof(s->'api_key_id') = 'null' FROM sa),
          'summary(all): every record of this run counted, api_key_id null');
SELECT is((SELECT ARRAY[jsonb_array_length(s->'top_endpoints'), jsonb_array_length(s->'top_ips')] FROM sa),
          ARRAY[10, 10], 'summary(all): top_endpoints and top_ips hold 10');
SELECT is((SELECT jsonb_object_agg(e->>'api_key_id', (e->>'requests')::bigint) FROM sa, jsonb_array_elements(s->'top_keys') e
            WHERE (e->>'api_key_id')::uuid IN (SELECT api_key_id FROM mine)),
          (SELECT jsonb_object_agg(api_key_id, n)
             FROM (SELECT api_key_id, count(*) AS n FROM mine WHERE api_key_id IS NOT NULL GROUP BY 1) x, sa
            WHERE s->'top_keys' @> jsonb_build_array(jsonb_build_object('api_key_id', api_key_id))),
          'summary(all): top_keys counts this run''s keys (all three on a fresh server) as the raw rows do');
SELECT ok((SELECT jsonb_array_length(s->'top_keys') BETWEEN 3 AND 10
                  AND NOT s->'top_keys' @> '[{"api_key_id": "00000000-0000-0000-0000-000000000000"}]' FROM sa),
          'summary(all): top_keys hold at most 10, never the nil uuid (no key)');
SELECT ok((SELECT bool_and((e->>'requests')::bigint >= (e2->>'requests')::bigint)
             FROM sa, jsonb_array_elements(s->'top_ips') WITH ORDINALITY t(e, o)
             JOIN jsonb_array_elements(s->'top_ips') WITH ORDINALITY t2(e2, o2) ON o2 = o + 1),
          'summary(all): top_ips busiest first');

-- The window: a rollup 3 hours old counts for since 4 hours, not 1 hour.
INSERT INTO authx.usage_hourly (hour, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)
VALUES (date_trunc('hour', now(), 'UTC') - interval '3 hours', :'ep' || 'old', 4, :'k1', 7, 70,
        authx._latency_hist(array_fill(10::real, ARRAY[7])));
SELECT is((SELECT (w4->>'requests')::bigint - (w1->>'requests')::bigint FROM
             (SELECT authx.usage_summary('4 hours', :'k1') AS w4, authx.usage_summary('1 hour', :'k1') AS w1) x),
          7::bigint, 'summary(k1): a rollup 3 hours old counts for since 4 hours, not for 1 hour');
SELECT is((SELECT s->'series'->0 FROM (SELECT authx.usage_summary('4 hours', :'k1') AS s) x),
          jsonb_build_object('hour', date_trunc('hour', now(), 'UTC') - interval '3 hours', 'requests', 7,
                             'errors_4xx', 7, 'errors_5xx', 0, 'p50_ms', round(pg_temp.mid(pg_temp.bucket(10))::numeric, 3),
                             'p95_ms', round(pg_temp.mid(pg_temp.bucket(10))::numeric, 3),
                             'p99_ms', round(pg_temp.mid(pg_temp.bucket(10))::numeric, 3)),
          'summary(k1, 4 hours): the series starts with that hour');
SELECT throws_ok(format('SELECT authx.usage_summary(%s)', s), code, msg, format('usage_summary(%s): %s', s, code))
  FROM (VALUES ('NULL', '22004', 'since must not be null'),
               ($$'0'$$, '22023', 'since must be between 1 second and 400 days'),
               ($$'0.5 seconds'$$, '22023', 'since must be between 1 second and 400 days'),
               ($$'999 milliseconds'$$, '22023', 'since must be between 1 second and 400 days'),
               ($$'-1 hour'$$, '22023', 'since must be between 1 second and 400 days'),
               ($$'401 days'$$, '22023', 'since must be between 1 second and 400 days'),
               ($$'14 months'$$, '22023', 'since must be between 1 second and 400 days')) v(s, code, msg);
-- Addresses of a whole day 3 days ago: from usage_hourly_ip while
-- maintenance has not summed that day, from usage_daily_ip once it has.
INSERT INTO authx.usage_hourly_ip (hour, ip, requests, errors)
SELECT ((now() AT TIME ZONE 'UTC')::date - 3)::timestamp AT TIME ZONE 'UTC' + h * interval '1 hour',
       '198.18.200.1', 1000000000, 1
  FROM generate_series(0, 23, 6) h;
SELECT is((SELECT s->'top_ips'->0 FROM (SELECT authx.usage_summary('5 days') AS s) x),
          '{"ip": "198.18.200.1", "requests": 4000000000, "errors": 4}'::jsonb,
          'summary: a whole day without usage_daily_ip rows counts its hourly addresses');
INSERT INTO authx.usage_daily_ip (day, ip, requests, errors)
VALUES ((now() AT TIME ZONE 'UTC')::date - 3, '198.18.200.2', 5000000000, 5);
SELECT is((SELECT s->'top_ips'->0 FROM (SELECT authx.usage_summary('5 days') AS s) x),
          '{"ip": "198.18.200.2", "requests": 5000000000, "errors": 5}'::jsonb,
          'summary: once the day has usage_daily_ip rows, they count and its hourly rows do not');
SELECT lives_ok($$SELECT authx.usage_summary('400 days'), authx.usage_summary('1 second')$$,
                'usage_summary: 400 days and 1 second are accepted');

-- ================================================================ metrics
CREATE TEMP TABLE m1 ON COMMIT DROP AS SELECT authx.metrics() AS m;
CREATE TEMP TABLE ml ON COMMIT DROP AS
SELECT o, l FROM m1, regexp_split_to_table(m, E'\n') WITH ORDINALITY AS t(l, o);
-- Families: from the TYPE lines.
CREATE TEMP TABLE mt ON COMMIT DROP AS
SELECT o, split_part(l, ' ', 3) AS family, split_part(l, ' ', 4) AS kind FROM ml WHERE l LIKE '# TYPE %';
SELECT ok((SELECT right(m, 1) = E'\n' FROM m1), 'metrics: ends with a newline');
SELECT is_empty(
    $$SELECT o, l FROM ml
       WHERE l !~ '^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* \S.*$'
         AND l !~ '^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$'
         AND l !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"\})? (-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?|NaN|[-+]Inf)$'
         AND NOT (l = '' AND o = (SELECT max(o) FROM ml))$$,
    'metrics: every line is a HELP, TYPE or sample line');
SELECT is_empty(
    $$SELECT t.family FROM mt t LEFT JOIN ml h ON h.o = t.o - 1
       WHERE h.l IS NULL OR h.l NOT LIKE '# HELP ' || t.family || ' %'$$,
    'metrics: each TYPE line comes right after the HELP line of its family');
SELECT is_empty('SELECT family FROM mt GROUP BY 1 HAVING count(*) > 1', 'metrics: each family is typed once');
SELECT is_empty(
    $$SELECT s.ord, s.name FROM m1, pg_temp.samples(m) s
       WHERE NOT EXISTS (SELECT 1 FROM mt
                          WHERE mt.o < s.ord
                            AND (mt.family = split_part(s.name, '{', 1)
                                 OR (mt.kind = 'histogram'
                                     AND split_part(s.name, '{', 1) IN (mt.family || '_bucket', mt.family || '_sum',
                                                                        mt.family || '_count'))))$$,
    'metrics: every sample follows the TYPE line of its family');
SELECT set_eq(
    'SELECT family, kind FROM mt',
    $$SELECT 'authx_' || regexp_replace(name, '_(us|ms)$', '_seconds') || CASE kind WHEN 'counter' THEN '_total' ELSE '' END,
             kind
        FROM authx.stats
      UNION ALL SELECT 'authx_request_duration_seconds', 'histogram'$$,
    'metrics: exactly the counters (authx_<name>_total) and gauges (authx_<name>) of authx.stats, _us and _ms in '
    'seconds, and the histogram authx_request_duration_seconds');
SELECT is_empty($$SELECT family FROM mt WHERE (kind = 'counter') <> (family LIKE '%\_total')$$,
                'metrics: counters end in _total, nothing else does');
SELECT is((SELECT array_agg(pg_temp.sample(m, 'authx_' || n) ORDER BY n) FROM m1,
                  unnest(ARRAY['usage_recorded_total', 'usage_written_total', 'usage_dropped_total',
                               'usage_queue_capacity']) n),
          (SELECT array_agg(value::numeric ORDER BY name) FROM authx.stats
            WHERE name IN ('usage_recorded', 'usage_written', 'usage_dropped', 'usage_queue_capacity')),
          'metrics: the usage counters and the queue capacity are those of authx.stats');
SELECT ok((SELECT pg_temp.sample(m, 'authx_maintenance_last_run_age_seconds') BETWEEN 0 AND 10 FROM m1),
          'metrics: maintenance_last_run_age_ms is given in seconds');
-- The histogram.
CREATE TEMP TABLE hb ON COMMIT DROP AS
SELECT row_number() OVER (ORDER BY s.ord) AS k, substring(s.name FROM 'le="([^"]*)"') AS le, s.value
  FROM m1, pg_temp.samples(m) s WHERE s.name LIKE 'authx\_request\_duration\_seconds\_bucket{%';
SELECT is((SELECT count(*)::int FROM hb), 96, 'histogram: 96 buckets');
SELECT is((SELECT le FROM hb WHERE k = 96), '+Inf', 'histogram: the last bucket is le="+Inf"');
SELECT is((SELECT le::float8 FROM hb WHERE k = 1), 1e-05::float8, 'histogram: the first bucket is le="1e-05" (0.01 ms)');
SELECT is_empty(
    $$SELECT b.k FROM hb a JOIN hb b ON b.k = a.k + 1
       WHERE b.k < 96 AND abs(b.le::float8 / a.le::float8 / 2 ^ 0.25 - 1) > 1e-8$$,
    'histogram: each finite le is the one before times 2^(1/4)');
SELECT is_empty('SELECT b.k FROM hb a JOIN hb b ON b.k = a.k + 1 WHERE b.value < a.value',
                'histogram: bucket counts are cumulative (never decrease)');
SELECT is((SELECT value FROM hb WHERE k = 96), (SELECT pg_temp.sample(m, 'authx_request_duration_seconds_count') FROM m1),
          'histogram: the +Inf bucket equals _count');
SELECT is((SELECT pg_temp.sample(m, 'authx_request_duration_seconds_count') FROM m1),
          (SELECT pg_temp.sample(m, 'authx_usage_recorded_total') FROM m1),
          'histogram: _count equals usage_recorded_total (every accepted call, since the server started)');
-- What this file recorded (nothing else records meanwhile).
SELECT is((SELECT pg_temp.sample(m1.m, 'authx_usage_recorded_total') - pg_temp.sample(m0.m, 'authx_usage_recorded_total')
             FROM m0, m1),
          (SELECT count(*)::numeric FROM mine), 'metrics: usage_recorded_total grew by the records of this file');
SELECT is((SELECT array_agg(b1.value - b0.value ORDER BY b1.k)
             FROM (SELECT row_number() OVER (ORDER BY s.ord) AS k, s.value FROM m0, pg_temp.samples(m) s
                    WHERE s.name LIKE 'authx\_request\_duration\_seconds\_bucket{%') b0
             JOIN hb b1 USING (k)),
          (SELECT array_agg(c ORDER BY k)
             FROM (SELECT k, sum(x) OVER (ORDER BY k)::numeric AS c
                     FROM unnest(authx._latency_hist((SELECT array_agg(latency_ms) FROM mine))) WITH ORDINALITY u(x, k)) z),
          'histogram: every cumulative bucket grew by the records of this file, as _latency_hist counts them');
SELECT is((SELECT pg_temp.sample(m1.m, 'authx_request_duration_seconds_sum')
                   - pg_temp.sample(m0.m, 'authx_request_duration_seconds_sum') FROM m0, m1),
          (SELECT sum(pg_temp.us(latency_ms)) / 1e6 FROM mine),
          'histogram: _sum grew by llround(latency * 1000) us per record of this file, exactly, in seconds');
SELECT is(ARRAY[pg_temp.us(0.0625), pg_temp.us(0.1875), pg_temp.us(0.0099), pg_temp.us(1e9)],
          ARRAY[63, 188, 10, 1000000000000]::bigint[],
          'pg_temp.us rounds as llround: 62.5 us up to 63, 187.5 up to 188 (halves away from zero), 1e9 ms exact');

-- ================================================================ stats
SELECT set_eq($$SELECT name, kind FROM authx.stats WHERE name LIKE 'usage%'$$,
              $$VALUES ('usage_recorded', 'counter'), ('usage_written', 'counter'), ('usage_dropped', 'counter'),
                       ('usage_status_4xx', 'counter'), ('usage_status_5xx', 'counter'),
                       ('usage_queue_depth', 'gauge'), ('usage_queue_capacity', 'gauge')$$,
              'authx.stats has exactly the usage counters and gauges');
SELECT is(ARRAY[pg_temp.stat_delta('usage_status_4xx'), pg_temp.stat_delta('usage_status_5xx')],
          ARRAY[(SELECT count(*) FROM mine WHERE status BETWEEN 400 AND 499),
                (SELECT count(*) FROM mine WHERE status >= 500)],
          'usage_status_4xx and usage_status_5xx grew by the 4xx and 5xx records of this file');
SELECT is(ARRAY[pg_temp.stat_delta('usage_recorded'), pg_temp.stat_delta('usage_written'),
                pg_temp.stat_delta('usage_dropped')],
          (SELECT ARRAY[count(*), count(*), 0] FROM mine),
          'stats: usage_recorded and usage_written grew by the records of this file, usage_dropped did not');
SELECT is(ARRAY[pg_temp.stat('usage_queue_depth'), pg_temp.stat('usage_queue_capacity')],
          ARRAY[0, current_setting('authx.usage_queue_size')::bigint],
          'stats: the usage queue is empty, its capacity authx.usage_queue_size');

-- ================================================================ health
CREATE TEMP TABLE pt (at timestamptz) ON COMMIT DROP;
SELECT is(authx._partitions_ahead('pg_temp.pt'), -1, '_partitions_ahead: -1 for a table without partitions');
CREATE TEMP TABLE pp (at timestamptz) PARTITION BY RANGE (at);
SELECT format('CREATE TEMP TABLE pp_p%s PARTITION OF pp FOR VALUES FROM (%L) TO (%L)', to_char(d, 'YYYYMMDD'),
              d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC') AS ddl
  FROM (SELECT (now() AT TIME ZONE 'UTC')::date + i AS d FROM unnest(ARRAY[-2, 0, 5]) i) x \gexec
CREATE TEMP TABLE pp_other PARTITION OF pp FOR VALUES FROM ('2999-01-01') TO ('2999-01-02');
SELECT is(authx._partitions_ahead('pg_temp.pp'), 5,
          '_partitions_ahead: the furthest day of the <table>_pYYYYMMDD partitions (others ignored)');
-- (Earlier suites may have run maintenance with a clock ahead.)
SELECT max(to_date(right(c.relname, 8), 'YYYYMMDD')) - (now() AT TIME ZONE 'UTC')::date AS usage_ahead
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'authx.usage_log'::regclass AND c.relname ~ '^usage_log_p[0-9]{8}$' \gset
SELECT is(authx._partitions_ahead('authx.usage_log'), :usage_ahead,
          '_partitions_ahead(usage_log): the furthest day of its daily partitions');
SELECT authx.health() AS h \gset
SELECT is(:'h'::jsonb->>'status', 'ok', 'health: ok on this test server');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'h'::jsonb->'checks') k),
          ARRAY['audit_log_partitions', 'audit_queue', 'maintenance_worker', 'redis', 'usage_log_partitions',
                'usage_queue'],
          'health: exactly the six checks');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_each(:'h'::jsonb->'checks') c(k, v) WHERE v->'ok' = 'true'),
          ARRAY['audit_log_partitions', 'audit_queue', 'maintenance_worker', 'redis', 'usage_log_partitions',
                'usage_queue'],
          'health: every check is ok');
-- This file's 4xx and 5xx records may raise the error_rate alert (the
-- worker checks every 5 s): health names it without changing the status.
SELECT ok(jsonb_typeof(:'h'::jsonb->'alerts') = 'array'
          AND (SELECT bool_and(a IN (SELECT name FROM authx.alerts)) FROM jsonb_array_elements_text(:'h'::jsonb->'alerts') a)
              IS NOT FALSE,
          'health: alerts is an array of alert names (the raised ones)');
SELECT is(:'h'::jsonb->'checks'->'maintenance_worker'->'pid', to_jsonb(pg_temp.stat('maintenance_worker_pid')),
          'health: the worker''s pid');
SELECT is(ARRAY[:'h'::jsonb->'checks'->'usage_queue'->>'fill', :'h'::jsonb->'checks'->'redis'->>'configured',
                :'h'::jsonb->'checks'->'redis'->>'connected'],
          ARRAY['0.0000', 'true', 'true'], 'health: the usage queue empty, Redis configured and connected');
SELECT is(:'h'::jsonb->'checks'->'usage_log_partitions',
          jsonb_build_object('ok', true, 'days_ahead', :usage_ahead, 'premake', (SELECT premake FROM cfg)),
          'health: usage_log partitions at least authx.audit_premake days ahead');
SELECT is((:'h'::jsonb->>'at')::timestamptz, now(), 'health: at is now()');

-- ================================================================ a full queue
-- With usage_log locked (until the savepoint is rolled back) the worker
-- takes a batch out of the ring and waits on the lock; the ring fills and
-- further records are dropped.  Every call is counted in usage_recorded
-- (and in the metrics histogram), dropped or not.
CREATE TEMP TABLE flood_before ON COMMIT DROP AS SELECT name, value FROM authx.stats;
CREATE FUNCTION pg_temp.flood_delta(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT s.value - b.value FROM authx.stats s JOIN flood_before b USING (name) WHERE s.name = p_name $$;
SAVEPOINT flood;
LOCK TABLE authx.usage_log IN SHARE MODE;
SELECT count(*) AS n1 FROM (SELECT authx.usage_record(:'ep' || 'flood', 200, 1) FROM generate_series(1, 30000) OFFSET 0) s \gset
SELECT ok(pg_temp.wait_count($$SELECT count(*) FROM pg_locks WHERE relation = 'authx.usage_log'::regclass AND NOT granted$$,
                             1) = 1,
          'the worker waits on usage_log');
-- The worker holds its batch: the ring fills up now.
SELECT count(*) AS n2 FROM (SELECT authx.usage_record(:'ep' || 'flood', 200, 1)
                              FROM generate_series(1, (SELECT value FROM authx.stats WHERE name = 'usage_queue_capacity'))
                            OFFSET 0) s \gset
SELECT ok(pg_temp.flood_delta('usage_dropped') > 0, 'a full queue drops records (usage_dropped)');
SELECT is(pg_temp.flood_delta('usage_recorded'), (:n1 + :n2)::bigint,
          'usage_recorded counts every call, the dropped ones too');
SELECT is(pg_temp.stat('usage_queue_depth'), pg_temp.stat('usage_queue_capacity'), 'stats: the usage queue is full');
-- What is neither written, dropped nor queued is the batch the worker took
-- out of the ring before the lock stopped it (at most 10000 records).
SELECT ok((SELECT held BETWEEN 1 AND 10000
             FROM (SELECT pg_temp.flood_delta('usage_recorded') - pg_temp.flood_delta('usage_written')
                          - pg_temp.flood_delta('usage_dropped') - pg_temp.stat('usage_queue_depth') AS held) x),
          'recorded = written + dropped + queued + the one batch of 1 .. 10000 the worker holds');
SELECT authx.health() AS hf \gset
SELECT is(ARRAY[:'hf'::jsonb->>'status', :'hf'::jsonb->'checks'->'usage_queue'->>'ok',
                :'hf'::jsonb->'checks'->'usage_queue'->>'fill'],
          ARRAY['failing', 'false', '1.0000'], 'health: failing with the usage queue full');
ROLLBACK TO SAVEPOINT flood;
SELECT is(pg_temp.wait_count($$SELECT pg_temp.flood_delta('usage_written') + pg_temp.flood_delta('usage_dropped')
                                      - pg_temp.flood_delta('usage_recorded')$$, 0, 30),
          0::bigint, 'once the lock goes the queue drains: recorded = written + dropped (within 30 s)');
SELECT is(ARRAY[pg_temp.stat('usage_queue_depth'), pg_temp.flood_delta('usage_recorded')],
          ARRAY[0, :n1 + :n2]::bigint[], 'the queue is empty, and nothing else was recorded meanwhile');
SELECT is((SELECT count(*) FROM authx.usage_log WHERE endpoint = :'ep' || 'flood'), pg_temp.flood_delta('usage_written'),
          'usage_log has exactly the written records');
SELECT is((SELECT pg_temp.sample(authx.metrics(), 'authx_request_duration_seconds_count')
                  - pg_temp.sample(m, 'authx_request_duration_seconds_count') FROM m1),
          (:n1 + :n2)::numeric, 'metrics: the histogram counted every call of the flood, the dropped ones too');

SELECT is(pg_temp.wait_count($$SELECT (authx.health()->>'status' = 'ok')::int$$, 1), 1::bigint,
          'health: ok again once the queue is drained (within 10 s)');

-- ================================================================ a missing partition
-- Last: this holds usage_log until ROLLBACK.  Every partition from today +
-- premake on goes.
SELECT format('DROP TABLE authx.%I', c.relname)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid, cfg
 WHERE i.inhparent = 'authx.usage_log'::regclass AND c.relname ~ '^usage_log_p[0-9]{8}$'
   AND to_date(right(c.relname, 8), 'YYYYMMDD') >= (now() AT TIME ZONE 'UTC')::date + cfg.premake \gexec
SELECT is((SELECT ARRAY[h->>'status', h->'checks'->'usage_log_partitions'->>'ok',
                        h->'checks'->'usage_log_partitions'->>'days_ahead']
             FROM (SELECT authx.health() AS h) x),
          ARRAY['degraded', 'false', ((SELECT premake FROM cfg) - 1)::text],
          'health: degraded when usage_log partitions reach less than premake days ahead');

SELECT * FROM finish();
ROLLBACK;
