\set i random(1, 1000000)
SELECT 'axs_' || lpad(:i::text, 43, 'A');
