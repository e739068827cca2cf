SELECT EXISTS (SELECT 1 FROM bench.ip_nets WHERE net >>= :ip::inet);
