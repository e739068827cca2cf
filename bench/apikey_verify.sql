\set i random(1, 100000)
SELECT * FROM authx.apikey_verify('axk_' || lpad(to_hex(:i::integer), 12, '0') || '_' || lpad(:i::text, 43, 'A'));
