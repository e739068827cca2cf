SELECT authx_cluster.has_permission(:uid, :perm);
