SELECT authx.ip_blocked(:ip);
