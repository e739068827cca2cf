INSERT INTO bench.counters AS c (subject, n, window_start)
VALUES (:subject, 1, now())
ON CONFLICT (subject) DO UPDATE
   SET n = CASE WHEN c.window_start > now() - interval '1 hour' THEN c.n + 1 ELSE 1 END,
       window_start = CASE WHEN c.window_start > now() - interval '1 hour' THEN c.window_start ELSE now() END
RETURNING n <= :max AS allowed, greatest(:max - n, 0) AS remaining;
