--
-- The audit log: events that survive ROLLBACK, their validation, and the
-- stats counters behind them.
--
\set SHOW_CONTEXT never
SELECT value AS enqueued_before FROM authx.stats WHERE name = 'audit_enqueued' \gset
SELECT value AS written_before FROM authx.stats WHERE name = 'audit_written' \gset

-- An event recorded inside a transaction that rolls back is still there.
BEGIN;
SELECT authx.audit('regress.rolled_back', 'high', '00000000-0000-0000-0000-000000000001',
                   '192.0.2.1', '{"tag": "r1"}', 'curl/8.0');
ROLLBACK;
SELECT authx.audit('regress.committed', 'low', ip => '2001:db8::1');
SELECT authx.audit('regress.defaults', 'info', details => NULL);
SELECT authx.audit('regress.long_agent', 'info', user_agent => repeat('ü', 400));
SELECT authx.audit('regress.severity', s::text) FROM unnest(enum_range(NULL::authx.severity)) s;
SELECT authx.audit_flush();

SELECT event_type, severity, user_id, ip, user_agent, details
  FROM authx.audit_log WHERE event_type LIKE 'regress.%' AND event_type <> 'regress.long_agent'
 ORDER BY id;
-- User agents are cut to 512 bytes at a character boundary.
SELECT octet_length(user_agent), length(user_agent)
  FROM authx.audit_log WHERE event_type = 'regress.long_agent';
-- The queue, not a synchronous insert, carried them.
SELECT (SELECT value FROM authx.stats WHERE name = 'audit_enqueued') - :enqueued_before AS enqueued,
       (SELECT value FROM authx.stats WHERE name = 'audit_written') - :written_before >= 9 AS written;
SELECT value AS queued_now FROM authx.stats WHERE name = 'audit_queue_events';
SELECT severity >= 'high' AS high_or_worse, count(*)
  FROM authx.audit_log WHERE event_type = 'regress.severity' GROUP BY 1 ORDER BY 1;

-- Invalid input: one line each.
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.audit(NULL, 'info')$$),
    ($$authx.audit('regress.x', NULL)$$),
    ($$authx.audit('', 'info')$$),
    ($$authx.audit('Login.Failed', 'info')$$),
    ($$authx.audit('has space', 'info')$$),
    ($$authx.audit(repeat('a', 65), 'info')$$),
    ($$authx.audit('regress.x', 'fatal')$$),
    ($$authx.audit('regress.x', 'INFO')$$),
    ($$authx.audit('regress.x', 'info', details => '[1, 2]')$$),
    ($$authx.audit('regress.x', 'info', details => '"text"')$$),
    ($$authx.audit('regress.x', 'info', details => jsonb_build_object('pad', repeat('x', 9000)))$$),
    ($$authx.audit_flush('-1 second')$$),
    ($$authx.audit_flush(NULL)$$)
) v(call);
SELECT count(*) AS invalid_events_recorded FROM authx.audit_log WHERE event_type = 'regress.x';
