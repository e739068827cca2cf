\set i random(1, 2000)
UPDATE bench.refresh SET tok = (SELECT r.refresh_token FROM authx.token_refresh(tok) r) WHERE i = :i;
