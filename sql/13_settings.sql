--
-- Dynamic settings and threshold alerts: every invalid argument of
-- setting_get and setting_set (one line each, through regress.try), the
-- documented settings and their defaults, a change and its reset, the
-- audit event, and the alerts as the view lists them.  Everything runs in
-- one transaction rolled back at the end (settings outlive a run).
--
\set SHOW_CONTEXT never
BEGIN;
SELECT name, kind, default_value, min_value, max_value, nullable FROM authx.setting_defs ORDER BY name;
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.setting_get(NULL)$$),
    ($$authx.setting_get('')$$),
    ($$authx.setting_get('alert.nope')$$),
    ($$authx.setting_get(repeat('x', 200))$$),
    ($$authx.setting_set(NULL, '1')$$),
    ($$authx.setting_set('alert.nope', '1')$$),
    ($$authx.setting_set('alert.queue_fill', '1.5')$$),
    ($$authx.setting_set('alert.queue_fill', '-0.1')$$),
    ($$authx.setting_set('alert.queue_fill', '"0.5"')$$),
    ($$authx.setting_set('alert.queue_fill', 'true')$$),
    ($$authx.setting_set('alert.queue_fill', '[0.5]')$$),
    ($$authx.setting_set('alert.error_rate', '1e400')$$),
    ($$authx.setting_set('alert.error_rate', '-1e-400')$$),
    ($$authx.setting_set('alert.redis_down_seconds', '2.5')$$),
    ($$authx.setting_set('alert.redis_down_seconds', '86401')$$),
    ($$authx.setting_set('alert.window_seconds', '9')$$),
    ($$authx.setting_set('alert.window_seconds', 'null')$$),
    ($$authx.setting_set('alert.enabled', '1')$$),
    ($$authx.setting_set('alert.enabled', '"true"')$$),
    ($$authx.setting_set('alert.enabled', 'null')$$),
    ($$authx.setting_set('alert.queue_fill', '1')$$),
    ($$authx.setting_set('alert.queue_fill', '0')$$),
    ($$authx.setting_set('alert.queue_fill', 'null')$$),
    ($$authx.setting_set('alert.enabled', 'false')$$),
    ($$authx.setting_set('alert.error_rate_min_requests', '1e9')$$)
) v(call);
-- A change, read back, then reset to the default (SQL NULL).
SELECT authx.setting_set('alert.error_rate', '0.02') AS set;
SELECT authx.setting_get('alert.error_rate') AS get;
SELECT name, value, is_default, updated_by = session_user AS by_me FROM authx.setting_list() WHERE NOT is_default ORDER BY name;
SELECT authx.setting_set('alert.error_rate', NULL) AS reset;
SELECT authx.setting_get('alert.error_rate') AS get;
SELECT count(*) AS overrides_left FROM authx.settings WHERE name = 'alert.error_rate';
SELECT details - 'by' AS details FROM authx.audit_log
 WHERE event_type = 'setting.changed' AND details->>'name' = 'alert.error_rate' ORDER BY id;
SELECT name, direction FROM authx.alerts ORDER BY name;
ROLLBACK;
