SELECT authx.has_permission(:uid, :perm);
