INSERT INTO bench.requests (at, endpoint, status, latency_ms, ip) VALUES (now(), 'GET /orders/{id}', 200, 12.5, '10.1.2.3');
