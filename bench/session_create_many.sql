\set i random(1, 1000)
SELECT session_token FROM authx.session_create(('00000000-0000-4000-8000-' || lpad(to_hex(:i::integer), 12, '0'))::uuid);
