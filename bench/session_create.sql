SELECT session_token FROM authx.session_create(:uid);
