SELECT code, user_id, scopes FROM authx.apikey_verify(:key);
