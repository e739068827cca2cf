SELECT authx.token_verify(:tok) IS NOT NULL;
