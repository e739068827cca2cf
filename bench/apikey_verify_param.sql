SELECT * FROM authx.apikey_verify(:key);
