SELECT * FROM authx.rate_check(:policy, :subject);
