\set i random(1, 1000000)
SELECT authx.session_revoke('axs_' || lpad(:i::text, 43, 'A'));
