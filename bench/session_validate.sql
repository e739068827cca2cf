\set i random(1, 1000000)
SELECT authx.session_validate('axs_' || lpad(:i::text, 43, 'A'));
