SELECT authx_cluster.session_validate(:tok);
