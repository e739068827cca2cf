#!/usr/bin/env node
// check_session.js — how a gateway checks an authx session token.
//
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://gw@db/app \
//     node check_session.js axs_...
//
// 1. Redis first.  authx writes every session through to Redis under
//    <prefix>s:<hex sha256(token)> (prefix: authx.redis_prefix, "authx:"
//    by default), a hash that is either
//      - a live entry:  user_id, expires_at (unix seconds), v
//      - a tombstone:   revoked, v          (the session was revoked)
//    The entry is valid when the hash is non-empty, has no "revoked" field
//    and expires_at is in the future.  A tombstone is a final "no".
// 2. On a miss (no key, an entry past its expires_at, or Redis unreachable)
//    ask PostgreSQL: SELECT authx.session_validate($1).  That also queues
//    the session for Redis again, so the next check is a hit.
//
// Prints one line and exits with:
//   0  valid <user_id> (redis)  |  valid <user_id> (postgres)
//   1  invalid (redis tombstone)  |  invalid (postgres)
//   2  usage
//   3  PostgreSQL could not answer
//
// Configuration (environment):
//   REDIS_URL      default redis://127.0.0.1:6379
//   DATABASE_URL   a postgres:// URL; when unset, the usual PG* variables
//                  (PGHOST, PGPORT, PGUSER, PGDATABASE, ...) apply.  The role
//                  needs authx_app (EXECUTE on session_validate).
//   AUTHX_PREFIX   default authx:  (must match authx.redis_prefix)
'use strict';

const crypto = require('node:crypto');
const { createClient } = require('redis');
const { Client } = require('pg');

const TIMEOUT_MS = 2000;

function redisKey(prefix, token) {
  // sha256 of the token's UTF-8 bytes, as authx stores it (token_hash).
  return prefix + 's:' + crypto.createHash('sha256').update(token, 'utf8').digest('hex');
}

// The verdict of a Redis hash: { valid: true, userId }, { valid: false }
// for a tombstone, or null for a miss.
function fromRedis(entry, nowSeconds) {
  if (!entry || Object.keys(entry).length === 0) return null;
  if (Object.prototype.hasOwnProperty.call(entry, 'revoked')) return { valid: false };
  const expiresAt = Number(entry.expires_at);
  if (!entry.user_id || !Number.isFinite(expiresAt) || expiresAt <= nowSeconds) return null;
  return { valid: true, userId: entry.user_id };
}

async function lookupRedis(url, key) {
  const client = createClient({
    url,
    socket: { connectTimeout: TIMEOUT_MS, reconnectStrategy: false },
    disableOfflineQueue: true,
  });
  let lastError = null;
  client.on('error', (err) => { lastError = err; });
  try {
    await client.connect();
    return await client.hGetAll(key);
  } catch (err) {
    throw lastError || err;
  } finally {
    if (client.isOpen) await client.quit().catch(() => {});
  }
}

async function validatePostgres(token) {
  // Without a connectionString, pg reads PGHOST, PGPORT, PGUSER, ... itself.
  const client = new Client({
    connectionString: process.env.DATABASE_URL || undefined,
    connectionTimeoutMillis: TIMEOUT_MS * 5,
    application_name: 'authx-example-node',
  });
  await client.connect();
  try {
    // The token is a bind parameter, never part of the SQL text.
    const res = await client.query('SELECT authx.session_validate($1) AS user_id', [token]);
    return res.rows[0].user_id;
  } finally {
    await client.end();
  }
}

async function main(argv) {
  const token = argv[2];
  if (token === undefined || argv.length > 3) {
    process.stderr.write('usage: check_session.js TOKEN\n');
    return 2;
  }
  const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  const prefix = process.env.AUTHX_PREFIX || 'authx:';

  let verdict = null;
  try {
    verdict = fromRedis(await lookupRedis(redisUrl, redisKey(prefix, token)), Date.now() / 1000);
  } catch (err) {
    // Redis is a cache: when it is down, PostgreSQL answers.
    process.stderr.write(`redis unavailable (${err.message}); asking postgres\n`);
  }
  if (verdict !== null) {
    process.stdout.write(verdict.valid ? `valid ${verdict.userId} (redis)\n` : 'invalid (redis tombstone)\n');
    return verdict.valid ? 0 : 1;
  }

  let userId;
  try {
    userId = await validatePostgres(token);
  } catch (err) {
    process.stderr.write(`postgres: ${err.message}\n`);
    return 3;
  }
  process.stdout.write(userId ? `valid ${userId} (postgres)\n` : 'invalid (postgres)\n');
  return userId ? 0 : 1;
}

if (require.main === module) {
  main(process.argv).then(
    (code) => { process.exitCode = code; },
    (err) => { process.stderr.write(`${err.stack || err}\n`); process.exitCode = 3; },
  );
}

module.exports = { redisKey, fromRedis };
