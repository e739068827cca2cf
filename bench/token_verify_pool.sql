\set i random(1, 2000)
SELECT authx.token_verify(tok) IS NOT NULL FROM bench.access WHERE i = :i;
