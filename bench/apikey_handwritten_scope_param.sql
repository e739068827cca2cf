SELECT id, user_id, scopes FROM bench.api_keys
 WHERE key_hash = sha256(convert_to(:key, 'UTF8')) AND revoked_at IS NULL
   AND (expires_at IS NULL OR expires_at > now()) AND scopes @> ARRAY[:scope];
