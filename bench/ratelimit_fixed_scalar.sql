SELECT authx.rate_limit(:subject, 1000000000, '1 hour');
