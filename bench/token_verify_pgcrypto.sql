-- What a user without authx writes (as the pgjwt extension does): check an
-- HS256 signature with pgcrypto's hmac, decode the payload, check exp.
SELECT c FROM (
    SELECT convert_from(decode(rpad(translate(split_part(:tok, '.', 2), '-_', '+/'),
                                    (length(split_part(:tok, '.', 2)) + 3) / 4 * 4, '='), 'base64'), 'UTF8')::jsonb AS c
     WHERE hmac(convert_to(split_part(:tok, '.', 1) || '.' || split_part(:tok, '.', 2), 'UTF8'),
                decode(:key, 'hex'), 'sha256')
           = decode(translate(split_part(:tok, '.', 3), '-_', '+/') || '=', 'base64')) s
 WHERE (c->>'exp')::bigint > extract(epoch FROM now());
