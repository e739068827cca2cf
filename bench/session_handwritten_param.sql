SELECT user_id FROM authx.sessions
 WHERE token_hash = sha256(convert_to(:tok, 'UTF8')) AND revoked_at IS NULL AND expires_at > now()
   AND (idle_timeout = 0 OR last_seen_at + make_interval(secs => idle_timeout) > now());
