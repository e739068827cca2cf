SELECT authx.usage_record('GET /orders/{id}', 200, 12.5, NULL, NULL, '10.1.2.3');
