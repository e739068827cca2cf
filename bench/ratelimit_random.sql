\set i random(1, 100000)
SELECT * FROM authx.rate_limit('ip:' || :i, 1000000000, '1 hour');
