SELECT authx.usage_summary('30 days') IS NOT NULL;
