\set n random(1, 2000000000)
SELECT authx.user_create('bench-' || :client_id || '-' || :n || '@example.com', :pw);
