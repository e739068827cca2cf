\set i random(1, 100000)
SELECT id, user_id, scopes FROM bench.api_keys
 WHERE key_hash = sha256(convert_to('axk_' || lpad(to_hex(:i::integer), 12, '0') || '_' || lpad(:i::text, 43, 'A'), 'UTF8'))
   AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());
