SELECT authx.session_validate(:tok);
