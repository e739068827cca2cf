SELECT authx.password_verify(:uid, :pw);
