// The gateway set-up that bench/ab.js and bench/alloc.js share: the one service they proxy, the
// environment of a gateway process for a pipeline kind and a store, and the API key a keyed
// pipeline sends. (bench/run.js builds its many cases itself.)
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HarnessError } from './processes.js'

/** Limits no bench run reaches: the bucket is taken on every request, never refuses. */
const NEVER_REACHED = '1000000000'

/**
 * Writes the routes file of `/bench` → `backend` for a pipeline kind: `full` (key auth, the
 * per-key bucket), `plain` (no auth, no rate limit), `cachehit` / `cachemiss` (plain with the
 * response cache on; a miss stores nothing). Returns its path.
 */
export function writeRoutes (dir, name, kind, backend) {
  const service = { name: 'bench', prefix: '/bench', backends: [{ url: backend }] }
  if (kind === 'full') service.auth = 'required'
  else Object.assign(service, { auth: 'none', rateLimit: false })
  if (kind === 'cachehit') service.cache = { ttlSeconds: 3600 }
  if (kind === 'cachemiss') service.cache = { ttlSeconds: 0 }
  const file = join(dir, `routes-${name}.json`)
  writeFileSync(file, JSON.stringify({ services: [service] }))
  return file
}

/**
 * A gateway process's environment: `full` logs a line per request and retries, the others log
 * warnings only and never retry. `extra` is added last (it may override anything).
 */
export function gatewayEnv ({ kind, store, port, password, routes, dataDir, redisUrl, redisPrefix, extra = {} }) {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    HOST: '127.0.0.1',
    PORT: String(port),
    ADMIN_PASSWORD: password,
    ROUTES_FILE: routes,
    STORAGE: store,
    DATA_DIR: dataDir,
    LOG_LEVEL: kind === 'full' ? 'info' : 'warn',
    RATE_LIMIT_RPM: NEVER_REACHED,
    RATE_LIMIT_BURST: NEVER_REACHED,
    ...(kind === 'full' ? {} : { RETRY_MAX_RETRIES: '0' }),
    ...(store === 'redis' ? { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: redisPrefix } : {}),
    ...extra
  }
}

/** The request headers of a pipeline kind: `full` gets a fresh API key from the admin API. */
export async function benchHeaders (kind, base, password, name) {
  if (kind !== 'full') return {}
  const res = await fetch(`${base}/admin/apikeys`, {
    method: 'POST',
    headers: { authorization: 'Basic ' + Buffer.from(`admin:${password}`).toString('base64'), 'content-type': 'application/json' },
    body: JSON.stringify({ name })
  })
  const body = await res.json()
  if (res.status !== 201) throw new HarnessError(`${name}: POST /admin/apikeys answered ${res.status}`)
  return { 'x-api-key': body.data.raw_key }
}
