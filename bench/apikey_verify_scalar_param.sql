SELECT authx.apikey_verify(:key);
