// The gateway benchmark (docs/performance.md). Run it with `npm run bench` (builds, then `node bench/run.js`)
// on Node 24, on a machine that is otherwise quiet. With the defaults it takes about 10 minutes.
// Files: run.js (this: cases, rounds, report), backend.js, baseline.js, thin-core.js, paced.js
// (open-loop fixed-rate load for the latency run), processes.js (spawn/pin/stop, RSS),
// redis-trips.js.
//
// What it does
//   1. Starts a backend (bench/backend.js: node:http, one small JSON body, keep-alive), unless
//      BACKEND_URL points at one; two baselines: the baseline (bench/baseline.js: bare Fastify +
//      @fastify/http-proxy, logger off, defaults), which the targets are ratios to, and the thin
//      core (bench/thin-core.js: bare Fastify, logger off, one hand-written catch-all handler on
//      undici's Pool — no reply-from, no http-proxy — streaming bodies both ways and dropping
//      hop-by-hop headers), the ceiling of a Fastify-based proxy; and one gateway process (`node
//      dist/src/server.js`) per gateway case below, each with its own ROUTES_FILE, DATA_DIR and
//      REDIS_KEY_PREFIX in a temporary directory. All run on the Node binary running this script.
//   2. Pins processes with taskset when there are 2+ CPUs: this script (the load generator) and the
//      backend on CPU 0, every proxy under test (baselines and gateways) alone on CPU 1. A Redis on
//      this machine is moved to CPU 0 for the run (its affinity restored at the end), so it never
//      shares the proxy's core.
//   3. Checks each case once (status 200; rate-limit headers present or absent; 401 without a key
//      where a key is required) and prints what each case really measures.
//   4. Warms each case up, then drives every case with the load generator (bench/load.js: wrk when
//      installed, else autocannon; 50 connections, one request at a time on each) in
//      interleaved rounds — each round runs every case once, in its own shuffled order (so no case
//      always follows the same neighbour; BENCH_SEED repeats an order) — and reports
//      medians: requests/s (2xx per second), p50 and p99 latency (autocannon: 1 ms resolution; wrk: 10 µs),
//      peak RSS of the proxy process while loaded (VmRSS from /proc, sampled every 200 ms), and the
//      medians of the per-round ratios to the baseline and to the thin core measured in the same
//      round (× baseline, × thin core). For gateway cases it also reports how many requests the
//      rate limiter served from its in-process fallback because the store timed out
//      (gateway_rate_limit_fail_open_total): such rows did not fully measure the store.
//   5. Counts the Redis traffic of the full pipeline on Redis: `INFO commandstats` deltas over its
//      measured rounds (server-wide: calls made inside Lua scripts and by other Redis clients are
//      included), and exact counts from two short MONITOR samples, keeping only commands sent on
//      the gateway's own sockets (found through /proc) and setting aside what its Lua scripts call
//      inside Redis (bench/redis-trips.js): one at a low fixed rate (round trips per request;
//      background calls amortised below 0.01 per request, a key-cache refresh, are tolerated as
//      "steady state"), one during a load-generator run at full speed (BENCH_CONNECTIONS connections,
//      all sending the same key, so one bucket: commands sent per request at saturation, where
//      takes arriving together may share one script call). MONITOR slows Redis, which may favour
//      such sharing: the commandstats estimate from the unmonitored rounds is printed beside it.
//   6. Latency run: an open-loop generator (bench/paced.js) sends requests at a fixed rate of
//      BENCH_LATENCY_FRACTION (0.5) × the full pipeline's (Redis) saturation req/s (the baseline's
//      when that case is not run), evenly spread, to the backend directly, the baseline, the thin
//      core and the full pipeline (Redis and embedded), interleaved, with only those processes
//      alive (every other case is stopped first), and reports p50/p99/p99.9 with microsecond
//      resolution and the p99 added over the direct backend.
//   7. Prints whether each target of docs/performance.md is met (and writes them to BENCH_JSON):
//        - req/s ≥ 1.0 × baseline for the full pipeline on Redis, ≥ 1.1 × for the full pipeline
//          embedded, ≥ 1.3 × for the plain proxy (embedded, and Redis shown too);
//        - p99 added over the direct backend ≤ 2 ms at ~0.5 × the full pipeline's own saturation
//          (full pipeline on Redis; embedded at the same rate);
//        - peak RSS under load of the full pipeline (Redis, embedded) ≤ the baseline's in this run;
//        - ≤ 1 Redis round trip per proxied request (low-rate MONITOR sample);
//        - ≤ 0.5 Redis commands sent per proxied request at saturation, one key (MONITOR sample
//          under the load generator).
//      The thin core has no target: × thin core shows how much of the ceiling each case keeps.
//      Exits 0 whenever the harness ran (missed targets included); 1 when it could not measure (a
//      process failed to start, a case answered no 2xx).
//
// Gateway cases (each on STORAGE=embedded and STORAGE=redis; the rate limit is RATE_LIMIT_RPM =
// RATE_LIMIT_BURST = 1e9, so no request is ever limited, but every one takes a token):
//   plain      service `auth: "none"`, `rateLimit: false` if the config accepts it (otherwise the
//              per-IP bucket still runs — the output says which), RETRY_MAX_RETRIES=0, LOG_LEVEL=warn.
//   ratelimit  `auth: "optional"`, no key sent: anonymous per-IP token bucket; retries off, warn.
//   keyauth    `auth: "required"`, X-API-Key of a key created through POST /admin/apikeys: key
//              lookup + per-key token bucket; retries off, warn.
//   full       as keyauth, plus retries at their defaults (RETRY_MAX_RETRIES=3) and LOG_LEVEL=info
//              (one JSON line per request, written to a file). Metrics, request ids, the circuit
//              breaker and active health checks are always on in every gateway case.
//   capped     as full, plus a per-service `maxConcurrent` and MAX_CONCURRENT_REQUESTS, both far
//              above what 50 connections reach: the cost of the concurrency limiter, never a 503.
//   traced     as full, each request sending a valid `traceparent` (continued, the backend gets the
//              gateway's span id); export off, the default: the cost of trace propagation alone
//              (docs/tracing.md). `full` itself propagates too (a new trace per request).
//   export10   as full, with span export on (OTEL_TRACES_EXPORTER=otlp) at 10% sampling
//              (parentbased_traceidratio 0.1) to a local sink that answers every OTLP POST 200.
//   cachehit   as plain, with the service's response cache on (`ttlSeconds: 3600`): every measured
//              request is a hit (compare with plain: the same request proxied).
//   cachemiss  as plain, with the cache on but nothing storable (`ttlSeconds: 0`, the backend states
//              no freshness): every request is a miss; the cost of the cache on the miss path.
//   jwt        as full, but the consumer is a JWT (one token, repeated: verified once, then from
//              the verified-token cache; docs/jwt.md) from a local issuer this script serves
//              (JWT_ISSUER, JWT_JWKS_URL). Target: ≤ 5% more CPU per request than `full`. A
//              first-seen token's cost per algorithm is bench/jwt-verify.js's.
//   workers    full pipeline on Redis with WORKERS=<BENCH_WORKERS> (default 2), only when
//              src/server.ts supports WORKERS; given every CPU (it needs several), so compare it
//              with care: the load generator and backend compete with it.
//
// Environment
//   BENCH_DURATION (10)          seconds per measured run
//   BENCH_ROUNDS (3)             interleaved rounds (throughput and latency)
//   BENCH_CONNECTIONS (50)       load-generator connections
//   BENCH_GENERATOR (auto)       wrk, autocannon, or auto (wrk when installed): bench/load.js
//   BENCH_WARMUP (2)             warm-up seconds per case before round 1
//   BENCH_LATENCY_DURATION       seconds per latency run (default BENCH_DURATION)
//   BENCH_LATENCY_FRACTION (0.5) latency-run rate as a fraction of the full pipeline's saturation req/s
//   BENCH_SEED (time)            seed of the rounds' shuffled case orders (printed in the report)
//   BENCH_MONITOR_SECONDS (3)    length of each MONITOR sample, low rate and saturation (0 = skip)
//   BENCH_WORKERS (2)            WORKERS of the extra case (0 = skip it)
//   BENCH_CASES                  comma list of case ids to run (e.g. `full-redis,plain-embedded`);
//                                direct, baseline and thin-core always run
//   BENCH_PIN (1)                0 = do not use taskset
//   BENCH_JSON                   also write the raw results to this file
//   BENCH_KEEP_TMP               1 = keep the temporary directory (routes files, gateway logs)
//   BACKEND_URL                  use this backend instead of starting bench/backend.js
//   REDIS_URL (redis://127.0.0.1:6379)  Redis for the redis cases (skipped if unreachable); only
//                                keys under a random `bench:<id>:` prefix are written and deleted
import { drive, generator } from './load.js'
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { pacedRun } from './paced.js'
import { childPids, createProcesses, freePort, HarnessError, startRssSampler } from './processes.js'
import { commandstats, connectRedis, deleteKeys, monitorSample } from './redis-trips.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SERVER = join(ROOT, 'dist', 'src', 'server.js')
// The V8 flags `npm start` uses, so the bench measures what operators run (see package.json).
const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=16']
const NODE = process.execPath
const BENCH_PATH = '/bench/items'
const HUGE = '1000000000'

// ---------------------------------------------------------------------------------------- settings

/** mulberry32: a small seeded generator, so a run's case orders can be repeated. */
function seededRandom (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A shuffled copy (Fisher–Yates). */
function shuffled (items, random) {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

function numberEnv (name, def, min) {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return def
  const n = Number(raw)
  if (!Number.isFinite(n) || n < min) throw new HarnessError(`${name}: must be a number >= ${min} (got "${raw}")`)
  return n
}

const S = {
  duration: numberEnv('BENCH_DURATION', 10, 1),
  rounds: Math.round(numberEnv('BENCH_ROUNDS', 3, 1)),
  connections: Math.round(numberEnv('BENCH_CONNECTIONS', 50, 1)),
  warmup: numberEnv('BENCH_WARMUP', 2, 0),
  latencyFraction: numberEnv('BENCH_LATENCY_FRACTION', 0.5, 0.01),
  seed: Math.round(numberEnv('BENCH_SEED', Date.now() % 1_000_000, 0)),
  monitorSeconds: numberEnv('BENCH_MONITOR_SECONDS', 3, 0),
  workers: Math.round(numberEnv('BENCH_WORKERS', 2, 0)),
  pin: process.env.BENCH_PIN !== '0',
  only: process.env.BENCH_CASES ? new Set(process.env.BENCH_CASES.split(',').map((s) => s.trim()).filter(Boolean)) : null,
  json: process.env.BENCH_JSON || null,
  keepTmp: process.env.BENCH_KEEP_TMP === '1',
  backendUrl: process.env.BACKEND_URL || null,
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379'
}
S.latencyDuration = numberEnv('BENCH_LATENCY_DURATION', S.duration, 1)

const cpus = os.availableParallelism()
const PIN = S.pin && cpus >= 2 && spawnSync('taskset', ['-V']).status === 0
const LOAD_CPU = '0'
const PROXY_CPU = '1'

// ------------------------------------------------------------------------------------- processes

let tmp = null
let procs = null
const loaded = new Set()
startRssSampler(loaded)

let redis = null
let redisPinned = null
const redisPrefixBase = `bench:${randomBytes(3).toString('hex')}:`

// ----------------------------------------------------------------------------------------- cases

const GATEWAY_KINDS = [
  { kind: 'plain', label: 'gateway: plain proxy', auth: 'none', key: false, logLevel: 'warn', retries: false, noLimit: true },
  { kind: 'ratelimit', label: 'gateway: + rate limit', auth: 'optional', key: false, logLevel: 'warn', retries: false },
  { kind: 'keyauth', label: 'gateway: + rate limit + key auth', auth: 'required', key: true, logLevel: 'warn', retries: false },
  { kind: 'full', label: 'gateway: full pipeline', auth: 'required', key: true, logLevel: 'info', retries: true },
  { kind: 'capped', label: 'gateway: full pipeline + concurrency caps', auth: 'required', key: true, logLevel: 'info', retries: true, caps: true },
  { kind: 'traced', label: 'gateway: full pipeline, client traceparent continued (export off)', auth: 'required', key: true, logLevel: 'info', retries: true, traceparent: true },
  { kind: 'export10', label: 'gateway: full pipeline + span export, 10% sampled', auth: 'required', key: true, logLevel: 'info', retries: true, exportSpans: true },
  // The response cache (docs/caching.md) against `plain`, the same request proxied: every request a
  // hit (the backend's answer stored for an hour), and every request a miss (nothing storable: the
  // lookup, the coalescing and the body tap run, nothing is kept).
  { kind: 'cachehit', label: 'gateway: plain proxy + cache hit', auth: 'none', key: false, logLevel: 'warn', retries: false, noLimit: true, cache: { ttlSeconds: 3600 }, expectCache: 'gateway; hit' },
  { kind: 'cachemiss', label: 'gateway: plain proxy + cache miss', auth: 'none', key: false, logLevel: 'warn', retries: false, noLimit: true, cache: { ttlSeconds: 0 }, expectCache: 'gateway; fwd=miss; fwd-status=200' },
  { kind: 'jwt', label: 'gateway: full pipeline, JWT consumer', auth: 'required', key: false, jwt: true, logLevel: 'info', retries: true }
]

/** A client's trace context: every request of the `traced` case continues this trace. */
const CLIENT_TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

/** A local OTLP sink for the export case: reads each POST and answers 200, nothing else. */
async function startOtlpSink () {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end())
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }) }
}

/**
 * The JWT cases' issuer: an ES256 key made here, its JWKS served by this script on loopback, and
 * one token (an hour long) every JWT case sends. Started only when a JWT case runs.
 */
async function startIssuer () {
  const { exportJWK, SignJWT } = await import('jose')
  const { generateKeyPairSync } = await import('node:crypto')
  const { createServer } = await import('node:http')
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' }] })
  const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(jwks) })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  server.unref()
  const issuer = 'https://bench-issuer.example'
  const token = await new SignJWT({ scope: 'bench' }).setProtectedHeader({ alg: 'ES256', kid: 'bench', typ: 'JWT' })
    .setIssuer(issuer).setSubject('bench-consumer').setIssuedAt().setExpirationTime('1h').sign(privateKey)
  return { issuer, jwksUrl: `http://127.0.0.1:${server.address().port}/jwks`, token, close: () => server.close() }
}
let jwtIssuer = null

/** Caps far above what 50 connections can reach: the limiter runs on every request, never sheds. */
const NEVER_REACHED_CAP = 100000

function workersSupported () {
  for (const f of [join(ROOT, 'src', 'server.ts'), SERVER]) {
    try {
      const text = readFileSync(f, 'utf8')
      if (/node:cluster/.test(text) && /workers/i.test(text)) return true
    } catch {}
  }
  return false
}

function routesFile (c, backendUrl, withRateLimitOff) {
  const service = { name: 'bench', prefix: '/bench', backends: [{ url: backendUrl }], auth: c.auth }
  if (withRateLimitOff) service.rateLimit = false
  if (c.caps) service.maxConcurrent = NEVER_REACHED_CAP
  if (c.cache) service.cache = c.cache
  const file = join(tmp, `routes-${c.id}${withRateLimitOff ? '-nolimit' : ''}.json`)
  writeFileSync(file, JSON.stringify({ services: [service] }, null, 2))
  return file
}

async function startGateway (c, backendUrl, withRateLimitOff, attempt = 1) {
  const port = await freePort()
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_PASSWORD: c.adminPassword,
    ROUTES_FILE: routesFile(c, backendUrl, withRateLimitOff),
    STORAGE: c.store,
    DATA_DIR: join(tmp, `data-${c.id}`),
    LOG_LEVEL: c.logLevel,
    RATE_LIMIT_RPM: HUGE,
    RATE_LIMIT_BURST: HUGE,
    ...(c.retries ? {} : { RETRY_MAX_RETRIES: '0' }),
    ...(c.store === 'redis' ? { REDIS_URL: S.redisUrl, REDIS_KEY_PREFIX: c.redisPrefix } : {}),
    ...(c.workers ? { WORKERS: String(c.workers) } : {}),
    ...(c.caps ? { MAX_CONCURRENT_REQUESTS: String(NEVER_REACHED_CAP) } : {}),
    ...(c.exportSpans
      ? { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: c.otlpSink, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }
      : {}),
    ...(c.jwt ? { JWT_ISSUER: jwtIssuer.issuer, JWT_JWKS_URL: jwtIssuer.jwksUrl } : {})
  }
  const name = `${c.id}${withRateLimitOff ? '-nolimit' : ''}${attempt > 1 ? `-${attempt}` : ''}`
  // Children inherit this script's affinity (CPU 0), so the WORKERS case is given every CPU.
  const cpu = c.workers ? `0-${cpus - 1}` : PROXY_CPU
  const proc = procs.start(`gateway-${name}`, [...GATEWAY_NODE_FLAGS, SERVER], { env, cpu, stdoutLog: name })
  const base = `http://127.0.0.1:${port}`
  try {
    await procs.waitHealthy(proc, base)
  } catch (err) {
    // The free port found above may have been taken by someone else meanwhile: try another.
    if (attempt < 3 && /EADDRINUSE/.test(err.message)) return await startGateway(c, backendUrl, withRateLimitOff, attempt + 1)
    throw err
  }
  return { proc, base }
}

/** Starts the case's gateway; for `plain`, first tries `rateLimit: false` in the routes file. */
async function setUpGateway (c, backendUrl) {
  if (c.noLimit) {
    try {
      Object.assign(c, await startGateway(c, backendUrl, true))
      c.rateLimitOffAccepted = true
      return
    } catch (err) {
      if (!(err instanceof HarnessError) || !/ROUTES_FILE/.test(err.message)) throw err
      c.rateLimitOffAccepted = false
    }
  }
  Object.assign(c, await startGateway(c, backendUrl, false))
}

async function createKey (c) {
  const res = await fetch(`${c.base}/admin/apikeys`, {
    method: 'POST',
    headers: {
      authorization: 'Basic ' + Buffer.from(`admin:${c.adminPassword}`).toString('base64'),
      'content-type': 'application/json'
    },
    body: JSON.stringify({ name: `bench-${c.id}` })
  })
  const body = await res.json().catch(() => null)
  const raw = body?.data?.raw_key
  if (res.status !== 201 || typeof raw !== 'string') {
    throw new HarnessError(`${c.id}: POST /admin/apikeys answered ${res.status} ${JSON.stringify(body)?.slice(0, 300)}`)
  }
  c.headers = { 'x-api-key': raw }
}

/** One request per case: proves it answers 200 and records which features were active. */
async function probe (c) {
  const res = await fetch(c.url, { headers: c.headers })
  const text = await res.text()
  if (res.status !== 200) throw new HarnessError(`${c.id}: probe GET ${c.url} answered ${res.status} ${text.slice(0, 300)}`)
  c.checks = []
  if (!c.gateway) return
  const limited = res.headers.has('x-ratelimit-limit')
  c.limiterActive = limited
  c.checks.push(limited ? 'token bucket taken (X-RateLimit-* on the response)' : 'no rate limiting (no X-RateLimit-* headers)')
  if (c.key) {
    const anon = await fetch(c.url)
    await anon.arrayBuffer()
    c.checks.push(anon.status === 401 ? 'key required (401 without X-API-Key)' : `WARNING: ${anon.status} without a key (expected 401)`)
  }
  if (c.expectCache) {
    const again = await fetch(c.url, { headers: c.headers })
    await again.arrayBuffer()
    const status = again.headers.get('cache-status')
    c.checks.push(status === c.expectCache ? `Cache-Status: ${status}` : `WARNING: Cache-Status ${status} (expected ${c.expectCache})`)
  }
  if (c.jwt) {
    // The same token with its signature's last characters changed: it must not verify.
    const token = c.headers.authorization.slice(7)
    const forged = await fetch(c.url, { headers: { authorization: `Bearer ${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}` } })
    await forged.arrayBuffer()
    c.checks.push(forged.status === 401 ? 'token verified (401 for a forged signature), then answered from the verified-token cache' : `WARNING: ${forged.status} for a forged token (expected 401)`)
  }
  if (c.kind === 'full') {
    const metrics = await fetch(`${c.base}/metrics`).then((r) => r.text()).catch(() => '')
    c.checks.push(/gateway_http_requests_total/.test(metrics) ? 'metrics recorded' : 'WARNING: gateway_http_requests_total missing from /metrics')
    const cb = await fetch(`${c.base}/admin/circuit-breakers`, {
      headers: { authorization: 'Basic ' + Buffer.from(`admin:${c.adminPassword}`).toString('base64') }
    }).then((r) => r.text()).catch(() => '')
    c.checks.push(/bench/.test(cb) ? 'breaker on the service' : 'WARNING: no breaker listed for the service')
  }
}

// ------------------------------------------------------------------------------------------ runs

/** Sums of the gateway's store-error and fail-open counters (null when /metrics is unreadable). */
async function storeCounters (c) {
  if (!c.gateway || c.workers) return null
  try {
    const text = await fetch(`${c.base}/metrics`, { signal: AbortSignal.timeout(5000) }).then((r) => r.text())
    const sum = (name) => text.split('\n')
      .filter((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
    return { failOpen: sum('gateway_rate_limit_fail_open_total'), storeErrors: sum('gateway_store_errors_total') }
  } catch { return null }
}

/** Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ: 100 on Linux). */
const CLK_TCK = 100

/**
 * CPU time (user + system, in ticks) the case's proxy process has used so far, or null where it
 * cannot be read (no /proc, or a case with worker processes). Divided by the requests of a round it
 * gives CPU µs per request: far steadier than req/s on a noisy machine, where another job's load
 * changes the throughput of every case but not the work each request costs.
 */
function cpuTicks (c) {
  if (c.proc?.pid === undefined || c.workers) return null
  try {
    const stat = readFileSync(`/proc/${c.proc.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return null
  }
}

async function saturate (c, seconds) {
  loaded.add(c)
  try {
    const r = await drive({ url: c.url, headers: c.headers, connections: S.connections, seconds })
    return { rps: r.ok / r.secs, mean: r.mean, p50: r.p50, p99: r.p99, ok: r.ok, non2xx: r.non2xx, errors: r.errors, sent: r.sent }
  } finally {
    loaded.delete(c)
  }
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** MONITOR while the load generator drives `c` at full speed (its 50 connections all send the same key). */
async function redisCommandsAtSaturation (c) {
  let run = null
  const sample = await monitorSample(redis, {
    pid: c.proc.pid,
    redisPort: Number(new URL(S.redisUrl).port || 6379),
    drive: async () => {
      run = await saturate(c, S.monitorSeconds)
      return run.sent
    }
  })
  return run ? { ...sample, rps: run.rps, non2xx: run.non2xx, errors: run.errors } : sample
}

async function redisRoundTrips (c, rate) {
  return await monitorSample(redis, {
    pid: c.proc.pid,
    redisPort: Number(new URL(S.redisUrl).port || 6379),
    drive: async () => {
      loaded.add(c)
      const r = await pacedRun({ url: c.url, headers: c.headers, rate, durationMs: S.monitorSeconds * 1000, connections: S.connections })
      loaded.delete(c)
      return r.ok + r.non2xx
    }
  })
}

// ---------------------------------------------------------------------------------------- report

const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a')
const mb = (kb) => (kb ? fmt(kb / 1024, 0) : 'n/a')

function table (head, rows, align) {
  const out = [`| ${head.join(' | ')} |`, `|${align.map((a) => (a === 'r' ? '---:' : '---')).join('|')}|`]
  for (const r of rows) out.push(`| ${r.join(' | ')} |`)
  return out.join('\n')
}

function describe (c) {
  if (c.id === 'direct') return 'the backend itself, no proxy (reference)'
  if (c.id === 'baseline') return 'bare Fastify + @fastify/http-proxy, logger off, defaults'
  if (c.id === 'thin-core') return 'bare Fastify, logger off, one hand-written catch-all handler on undici\'s Pool (bench/thin-core.js): hop-by-hop headers dropped, bodies streamed both ways — the ceiling of a Fastify-based proxy'
  const parts = []
  if (c.kind === 'plain') {
    parts.push('auth "none", retries off, LOG_LEVEL=warn')
    if (!c.limiterActive) parts.push('rate limiting off (`rateLimit: false` in the routes file)')
    else parts.push(`the per-IP token bucket still runs (${c.rateLimitOffAccepted === false ? 'the routes file does not accept `rateLimit: false`' : 'no switch honoured'}) — so this equals "+ rate limit" minus the key-header check`)
  }
  if (c.kind === 'ratelimit') parts.push('auth "optional", no key sent: anonymous per-IP token bucket, retries off, LOG_LEVEL=warn')
  if (c.kind === 'keyauth') parts.push('auth "required", X-API-Key: key lookup + per-key token bucket, retries off, LOG_LEVEL=warn')
  if (c.kind === 'jwt') parts.push('as "full pipeline", but `Authorization: Bearer <JWT>` (ES256, one token repeated) instead of an API key: per-consumer token bucket `jwt:<iss>:<sub>`')
  if (c.kind === 'capped') parts.push(`as "full pipeline", plus maxConcurrent and MAX_CONCURRENT_REQUESTS of ${NEVER_REACHED_CAP} (the limiter runs, never sheds)`)
  if (c.kind === 'full') {
    parts.push('as "+ key auth", plus retries on (RETRY_MAX_RETRIES=3) and LOG_LEVEL=info (one JSON line per request to a file)')
    if (c.workers) parts.push(`WORKERS=${c.workers}, given every CPU (shared with the load generator and backend)`)
  }
  parts.push(`store ${c.store}`)
  return `${parts.join('; ')}. Checked: ${c.checks.join('; ')}.`
}

// ------------------------------------------------------------------------------------------ main

async function main () {
  const t0 = Date.now()
  if (!existsSync(SERVER)) throw new HarnessError(`${SERVER} not found: run \`npm run build\` first (npm run bench does)`)
  tmp = mkdtempSync(join(os.tmpdir(), 'gw-bench-'))
  procs = createProcesses({ dir: tmp, node: NODE, pin: PIN })
  if (PIN) spawnSync('taskset', ['-a', '-cp', LOAD_CPU, String(process.pid)], { stdio: 'ignore' })

  const major = Number(process.versions.node.split('.')[0])
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const notes = []
  if (major < 24) notes.push(`running on Node ${process.version}: the project targets Node 24 (use \`npm run bench\`)`)

  // Redis.
  const r = await connectRedis(S.redisUrl)
  if (r instanceof Error) notes.push(`Redis at ${S.redisUrl} unreachable (${r.message}): redis cases skipped`)
  else {
    redis = r
    redisPinned = await pinLocalRedis(redis)
  }

  // Backend.
  let backendUrl = S.backendUrl
  let backendProc = null
  if (!backendUrl) {
    backendProc = procs.start('backend', [join(ROOT, 'bench', 'backend.js'), '0'], { cpu: LOAD_CPU })
    backendUrl = `http://127.0.0.1:${await procs.readPort(backendProc)}`
  }
  const baselineProc = procs.start('baseline', [join(ROOT, 'bench', 'baseline.js'), backendUrl, '0'], { cpu: PROXY_CPU })
  const thinProc = procs.start('thin-core', [join(ROOT, 'bench', 'thin-core.js'), backendUrl, '0'], { cpu: PROXY_CPU })
  const [baselinePort, thinPort] = await Promise.all([procs.readPort(baselineProc), procs.readPort(thinProc)])

  const direct = { id: 'direct', label: 'backend direct', store: '–', url: backendUrl + BENCH_PATH, headers: {}, proc: backendProc, rounds: [] }
  const baseline = { id: 'baseline', label: 'baseline: Fastify + @fastify/http-proxy', store: '–', url: `http://127.0.0.1:${baselinePort}${BENCH_PATH}`, headers: {}, proc: baselineProc, rounds: [] }
  const thin = { id: 'thin-core', label: 'thin core: Fastify + undici Pool handler', store: '–', url: `http://127.0.0.1:${thinPort}${BENCH_PATH}`, headers: {}, proc: thinProc, rounds: [] }

  // Gateway cases.
  const gateways = []
  for (const store of ['embedded', 'redis']) {
    for (const k of GATEWAY_KINDS) gateways.push({ ...k, id: `${k.kind}-${store}`, store })
  }
  if (S.workers > 1) {
    if (workersSupported()) gateways.push({ ...GATEWAY_KINDS[3], id: `full-redis-workers${S.workers}`, label: `gateway: full pipeline, WORKERS=${S.workers}`, store: 'redis', workers: S.workers, tree: true })
    else notes.push('WORKERS case skipped: src/server.ts does not start node:cluster workers')
  }
  const selected = gateways.filter((c) => (S.only ? S.only.has(c.id) : true)).filter((c) => {
    if (c.store === 'redis' && !redis) return false
    return true
  })
  if (selected.some((c) => c.exportSpans)) otlpSink = await startOtlpSink()
  selected.forEach((c, i) => {
    if (c.exportSpans) c.otlpSink = otlpSink.url
    c.gateway = true
    c.rounds = []
    c.headers = {}
    c.adminPassword = randomBytes(12).toString('hex')
    c.redisPrefix = `${redisPrefixBase}${i}:`
  })
  if (selected.some((c) => c.jwt)) jwtIssuer = await startIssuer()
  await Promise.all(selected.map((c) => setUpGateway(c, backendUrl)))
  for (const c of selected) {
    c.url = c.base + BENCH_PATH
    if (c.key) await createKey(c)
    if (c.jwt) c.headers = { authorization: `Bearer ${jwtIssuer.token}` }
    if (c.traceparent) c.headers.traceparent = CLIENT_TRACEPARENT
    if (c.workers && childPids(c.proc.pid).length === 0) notes.push(`${c.id}: WORKERS=${c.workers} accepted but no worker processes found`)
  }
  const cases = [direct, baseline, thin, ...selected]
  for (const c of cases) await probe(c)
  for (const c of selected) {
    try { c.version = (await fetch(`${c.base}/info`).then((res) => res.json())).version } catch {}
  }

  const fullRedis = selected.find((c) => c.id === 'full-redis')
  const fullEmbedded = selected.find((c) => c.id === 'full-embedded')
  const latencyTargets = [direct, baseline, thin, fullRedis, fullEmbedded].filter(Boolean)
  const estimate = cases.length * (S.warmup + 0.5 + S.rounds * (S.duration + 0.6)) +
    (fullRedis && S.monitorSeconds > 0 ? 2 * (S.monitorSeconds + 1) : 0) + 1 + S.rounds * latencyTargets.length * (S.latencyDuration + 0.5)
  console.log(`# Gateway benchmark — ${new Date().toISOString()}\n`)
  console.log(`- ${pkg.name} ${selected[0]?.version ?? pkg.version}, Node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${cpus}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
  console.log(`- pinning: ${PIN ? `load generator + backend on CPU ${LOAD_CPU}, each proxy alone on CPU ${PROXY_CPU} (taskset); ${redisPinned ? `local Redis (pid ${redisPinned.pid}) on CPU ${LOAD_CPU} for the run` : 'Redis not pinned'}` : 'none'}`)
  console.log(`- ${generator}: ${S.connections} connections, pipelining 1, ${S.duration} s × ${S.rounds} interleaved rounds, ${S.warmup} s warm-up per case; GET ${BENCH_PATH} → ${S.backendUrl ? 'BACKEND_URL' : 'bench/backend.js'} (${backendUrl})`)
  console.log(`- gateway: RATE_LIMIT_RPM = RATE_LIMIT_BURST = ${HUGE} (never limits), one service at /bench; Redis ${redis ? S.redisUrl + ` (prefix ${redisPrefixBase})` : 'not used'}`)
  console.log(`- estimated duration ${Math.round(estimate / 60 * 10) / 10} min; case order shuffled per round, BENCH_SEED=${S.seed}`)
  for (const n of notes) console.log(`- NOTE: ${n}`)
  console.log('')

  // Warm-up.
  for (const c of cases) if (S.warmup > 0) await saturate(c, S.warmup)

  // Interleaved rounds.
  const random = seededRandom(S.seed)
  const stats = { deltas: {}, requests: 0 }
  for (let round = 0; round < S.rounds; round++) {
    const order = shuffled(cases, random)
    for (const c of order) {
      const before = c === fullRedis ? await commandstats(redis) : null
      const countersBefore = await storeCounters(c)
      const cpuBefore = cpuTicks(c)
      const res = await saturate(c, S.duration)
      const cpuAfter = cpuTicks(c)
      if (cpuBefore !== null && cpuAfter !== null && res.sent > 0) res.cpuUs = (cpuAfter - cpuBefore) * 1e6 / CLK_TCK / res.sent
      const countersAfter = await storeCounters(c)
      if (countersBefore && countersAfter) {
        res.failOpen = countersAfter.failOpen - countersBefore.failOpen
        res.storeErrors = countersAfter.storeErrors - countersBefore.storeErrors
      }
      if (before) {
        const after = await commandstats(redis)
        after.info = (after.info ?? 1) - 1 // our own INFO before the run
        for (const [cmd, n] of Object.entries(after)) {
          const d = n - (before[cmd] ?? 0)
          if (d > 0) stats.deltas[cmd] = (stats.deltas[cmd] ?? 0) + d
        }
        stats.requests += res.sent
      }
      c.rounds[round] = res
      process.stderr.write(`round ${round + 1}/${S.rounds} ${c.id.padEnd(24)} ${fmt(res.rps).padStart(8)} req/s  p99 ${res.p99} ms${res.non2xx || res.errors ? `  non-2xx ${res.non2xx} errors ${res.errors}` : ''}\n`)
      await sleep(300)
    }
  }
  for (const c of cases) {
    c.rps = median(c.rounds.map((x) => x.rps))
    c.mean = median(c.rounds.map((x) => x.mean))
    c.p50 = median(c.rounds.map((x) => x.p50))
    c.p99 = median(c.rounds.map((x) => x.p99))
    c.ratio = median(c.rounds.map((x, i) => x.rps / baseline.rounds[i].rps))
    c.thinRatio = median(c.rounds.map((x, i) => x.rps / thin.rounds[i].rps))
    c.non2xx = c.rounds.reduce((a, x) => a + x.non2xx, 0)
    c.errors = c.rounds.reduce((a, x) => a + x.errors, 0)
    c.failOpen = c.rounds.some((x) => x.failOpen !== undefined) ? c.rounds.reduce((a, x) => a + (x.failOpen ?? 0), 0) : null
    c.storeErrors = c.rounds.reduce((a, x) => a + (x.storeErrors ?? 0), 0)
    c.cpuUs = median(c.rounds.map((x) => x.cpuUs))
  }

  // Redis traffic (MONITOR samples): round trips at a low fixed rate, commands sent at saturation.
  let monitor = null
  let monitorSat = null
  const monitorRate = Math.max(100, Math.min(1000, Math.round(baseline.rps * S.latencyFraction)))
  if (fullRedis && S.monitorSeconds > 0) {
    monitor = await redisRoundTrips(fullRedis, monitorRate)
    await sleep(300)
    monitorSat = await redisCommandsAtSaturation(fullRedis)
  }

  // Latency run, with only the measured processes alive (docs/performance.md): the other cases are stopped.
  await procs.stop(cases.filter((c) => !latencyTargets.includes(c)).map((c) => c.proc).filter(Boolean))
  // "About half of saturation" of the system under test: the full pipeline's own saturation (a
  // rate above what it can serve would measure queueing, not the gateway's added latency).
  const saturationOf = fullRedis ?? baseline
  const rate = Math.max(1, Math.round(saturationOf.rps * S.latencyFraction))
  for (const c of latencyTargets) c.lat = []
  // Warms the generator itself up (JIT, its pool) so the first measured run is not penalised.
  await pacedRun({ url: direct.url, rate, durationMs: 1000, connections: S.connections })
  for (let round = 0; round < S.rounds; round++) {
    const order = shuffled(latencyTargets, random)
    for (const c of order) {
      const countersBefore = await storeCounters(c)
      loaded.add(c)
      const res = await pacedRun({ url: c.url, headers: c.headers, rate, durationMs: S.latencyDuration * 1000, connections: S.connections })
      loaded.delete(c)
      const countersAfter = await storeCounters(c)
      if (countersBefore && countersAfter) res.failOpen = countersAfter.failOpen - countersBefore.failOpen
      c.lat[round] = res
      process.stderr.write(`latency ${round + 1}/${S.rounds} ${c.id.padEnd(22)} p50 ${res.p50.toFixed(3)} ms  p99 ${res.p99.toFixed(3)} ms  (${fmt(res.achievedRate)} req/s)\n`)
      await sleep(300)
    }
  }
  for (const c of latencyTargets) {
    c.latP50 = median(c.lat.map((x) => x.p50))
    c.latP90 = median(c.lat.map((x) => x.p90))
    c.latP99 = median(c.lat.map((x) => x.p99))
    c.latP999 = median(c.lat.map((x) => x.p999))
    c.addedP99 = median(c.lat.map((x, i) => x.p99 - direct.lat[i].p99))
    c.latRate = median(c.lat.map((x) => x.achievedRate))
    c.latBad = c.lat.reduce((a, x) => a + x.non2xx + x.errors, 0)
    c.latLag = Math.max(...c.lat.map((x) => x.maxLagMs))
    c.latFailOpen = c.gateway ? c.lat.reduce((a, x) => a + (x.failOpen ?? 0), 0) : null
  }

  // ------------------------------------------------------------------------------------ output
  console.log(`## Throughput at saturation (medians of ${S.rounds} rounds)\n`)
  console.log(table(
    ['case', 'store', 'req/s', '× baseline', '× thin core', 'CPU µs/req', 'mean ms', 'p50 ms', 'p99 ms', 'peak RSS MB', 'non-2xx / errors', 'fail-open'],
    cases.map((c) => [c.label, c.store, fmt(c.rps), fmt(c.ratio, 2), fmt(c.thinRatio, 2), Number.isFinite(c.cpuUs) ? fmt(c.cpuUs, 1) : '–', fmt(c.mean, 2), fmt(c.p50), fmt(c.p99), mb(c.peakRssKb), `${c.non2xx} / ${c.errors}`, c.failOpen === null || c.failOpen === undefined ? '–' : fmt(c.failOpen)]),
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']
  ))
  const degraded = cases.filter((c) => c.failOpen > 0)
  if (degraded.length) {
    console.log(`\nNOTE: ${degraded.map((c) => `${c.id} (${fmt(c.failOpen)} requests, ${fmt(c.storeErrors)} store errors)`).join(', ')} partly measured the in-process fallback bucket, not the store: store calls exceeded RATE_LIMIT_STORE_TIMEOUT_MS and the limiter failed open (docs/proxying.md#rate-limits). Those rows understate the store's cost; the machine or Redis was overloaded.`)
  }
  console.log('\nreq/s counts 2xx responses; × baseline and × thin core are medians of per-round ratios to that baseline; p50/p99 are the load generator\'s (autocannon: 1 ms resolution; wrk: 10 µs); peak RSS is the proxy process (for WORKERS, primary + workers) sampled every 200 ms while it was under load; fail-open counts requests the rate limiter served from its in-process fallback because the store timed out (gateway_rate_limit_fail_open_total delta; not available for WORKERS, whose /metrics is one worker\'s).')
  console.log('\nWhat each row measures:\n')
  for (const c of cases) console.log(`- **${c.label}${c.gateway ? ` (${c.store})` : ''}**: ${describe(c)}`)
  console.log('\nPer-round req/s (rounds run every case once, in a shuffled order each round):\n')
  for (const c of cases) console.log(`- ${c.id}: ${c.rounds.map((x) => fmt(x.rps)).join(', ')}`)

  console.log(`\n## Latency at a fixed ${fmt(rate)} req/s (${S.latencyFraction} × ${saturationOf === baseline ? 'baseline' : 'full pipeline (redis)'} saturation), open loop, ${S.latencyDuration} s × ${S.rounds} rounds, medians\n`)
  const stopped = cases.filter((c) => !latencyTargets.includes(c))
  if (stopped.length) console.log(`Only the measured processes were alive: ${stopped.map((c) => c.id).join(', ')} stopped first.\n`)
  console.log(table(
    ['target', 'achieved req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'p99 added vs direct', 'non-2xx + errors', 'fail-open'],
    latencyTargets.map((c) => [c.label + (c.gateway ? ` (${c.store})` : ''), fmt(c.latRate), fmt(c.latP50, 3), fmt(c.latP90, 3), fmt(c.latP99, 3), fmt(c.latP999, 3), c === direct ? '–' : `${fmt(c.addedP99, 3)} ms`, String(c.latBad), c.latFailOpen === null ? '–' : fmt(c.latFailOpen)]),
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']
  ))
  const overloaded = latencyTargets.filter((c) => rate > 0.9 * c.rps)
  if (overloaded.length) console.log(`\nNOTE: ${fmt(rate)} req/s is above 90% of the saturation measured for ${overloaded.map((c) => `${c.id} (${fmt(c.rps)} req/s)`).join(', ')}: its latency there is mostly queueing.`)
  const lagging = latencyTargets.filter((c) => c.latLag > 5)
  if (lagging.length) console.log(`\nNOTE: the load generator fell behind schedule by up to ${fmt(Math.max(...lagging.map((c) => c.latLag)), 1)} ms (${lagging.map((c) => c.id).join(', ')}): the machine is busy; latencies are less reliable.`)

  let roundTrips = NaN
  let commandsAtSaturation = NaN
  let commandsSource = null
  if (fullRedis) {
    console.log('\n## Redis traffic, full pipeline on Redis\n')
    const total = Object.values(stats.deltas).reduce((a, b) => a + b, 0)
    const seenInScripts = monitor && !monitor.error ? monitor.inScripts : null
    const scriptShare = (cmd) => {
      if (seenInScripts) {
        const inside = seenInScripts[cmd] ?? 0
        const top = monitor.top[cmd] ?? 0
        return inside + top > 0 ? inside / (inside + top) : 0
      }
      return ['time', 'hmget', 'hget', 'hset', 'hmset', 'pexpire', 'expire', 'pttl', 'hincrby', 'incr', 'incrby', 'decrby'].includes(cmd) && (stats.deltas.evalsha || stats.deltas.eval) ? 1 : 0
    }
    const topLevel = Object.entries(stats.deltas).reduce((a, [cmd, n]) => a + n * (1 - scriptShare(cmd)), 0)
    const topLevelPerRequest = topLevel / stats.requests
    console.log(`INFO commandstats deltas over the ${S.rounds} measured rounds (saturation, ${S.connections} connections, one key; ${fmt(stats.requests)} requests; server-wide, so calls inside Lua scripts and by any other Redis client during those ${S.rounds * S.duration} s are included):\n`)
    console.log(Object.entries(stats.deltas).sort((a, b) => b[1] - a[1]).map(([cmd, n]) => `- ${cmd}: ${fmt(n)} (${fmt(n / stats.requests, 3)}/request${scriptShare(cmd) > 0 ? `, ${fmt(scriptShare(cmd) * 100)}% inside scripts` : ''})`).join('\n') || '- (none)')
    console.log(`\nAll calls: ${fmt(total / stats.requests, 3)}/request. Top-level estimate (minus calls made inside scripts, ${seenInScripts ? 'shares from the MONITOR sample' : 'static list: time, hmget, hset, pexpire, …'}): **${fmt(topLevelPerRequest, 3)}/request**.`)
    const list = (o) => Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${fmt(n)}`).join(', ') || 'none'
    if (monitor && !monitor.error) {
      roundTrips = monitor.perRequest
      console.log(`\nMONITOR sample at a low rate (exact): ${S.monitorSeconds} s at ${fmt(monitorRate)} req/s, ${fmt(monitor.requests)} requests, commands sent on the gateway's ${monitor.sockets} Redis socket(s): ${list(monitor.top)}; called inside its scripts (not round trips): ${list(monitor.inScripts)}.`)
      console.log(`Top-level commands (round trips) per proxied request: **${fmt(monitor.perRequest, 3)}**`)
    } else {
      roundTrips = topLevelPerRequest
      if (monitor?.error) console.log(`\nMONITOR sample not taken: ${monitor.error}. The round-trip target below uses the commandstats estimate.`)
    }
    if (monitorSat && !monitorSat.error) {
      commandsAtSaturation = monitorSat.perRequest
      commandsSource = 'MONITOR'
      console.log(`\nMONITOR sample at saturation (exact): ${S.monitorSeconds} s of ${generator}, ${S.connections} connections, all with the same key (one bucket), ${fmt(monitorSat.requests)} requests at ${fmt(monitorSat.rps)} req/s (${fmt(monitorSat.rps / fullRedis.rps * 100)}% of the unmonitored median: MONITOR slows Redis), commands sent on the gateway's ${monitorSat.sockets} Redis socket(s): ${list(monitorSat.top)}; called inside its scripts: ${list(monitorSat.inScripts)}.`)
      console.log(`Commands sent per proxied request at saturation: **${fmt(monitorSat.perRequest, 3)}** (without MONITOR, the commandstats estimate above: ${fmt(topLevelPerRequest, 3)}).`)
    } else {
      commandsAtSaturation = topLevelPerRequest
      commandsSource = 'commandstats'
      if (monitorSat?.error) console.log(`\nMONITOR sample at saturation not taken: ${monitorSat.error}. The commands-at-saturation target below uses the commandstats estimate.`)
    }
  }

  console.log('\n## Targets (docs/performance.md)\n')
  const targets = []
  const target = (id, label, measured, show, ok, caveat = null) => {
    const m = Number.isFinite(measured) ? measured : null
    targets.push({ id, target: label, measured: m, met: m === null ? null : ok(m), caveat: m === null ? null : caveat, shown: m === null ? 'n/a' : show(m) })
  }
  const vsBaseline = (id, c, min, name) => target(`${id}-rps`, `${name} ≥ ${fmt(min, 1)} × baseline req/s`, c?.ratio,
    (m) => `${fmt(m, 2)} × (${fmt(c.thinRatio, 2)} × thin core)${c.kind === 'plain' && c.limiterActive ? '; limiter still ran' : ''}`, (m) => m >= min)
  const byId = (id) => selected.find((c) => c.id === id)
  vsBaseline('full-redis', fullRedis, 1.0, 'full pipeline (redis)')
  vsBaseline('full-embedded', fullEmbedded, 1.1, 'full pipeline (embedded)')
  vsBaseline('plain-embedded', byId('plain-embedded'), 1.3, 'plain proxy (embedded)')
  vsBaseline('plain-redis', byId('plain-redis'), 1.3, 'plain proxy (redis)')
  // The concurrency limiter's cost: CPU per request is steadier than req/s on a shared machine, but
  // a few percent still hide in its round-to-round spread, which the caveat reports.
  const spread = (c) => {
    const xs = (c?.rounds ?? []).map((x) => x.cpuUs).filter(Number.isFinite)
    return xs.length > 1 ? (Math.max(...xs) / Math.min(...xs) - 1) * 100 : NaN
  }
  for (const store of ['embedded', 'redis']) {
    const full = byId(`full-${store}`)
    const capped = byId(`capped-${store}`)
    const cost = full && capped ? (capped.cpuUs / full.cpuUs - 1) * 100 : NaN
    target(`capped-${store}-cost`, `concurrency caps add ≤ 2% CPU per request to the full pipeline (${store})`, cost,
      (m) => `${fmt(m, 1)}% (${fmt(capped.cpuUs, 1)} vs ${fmt(full.cpuUs, 1)} µs/req; ${fmt(capped.ratio, 2)}× vs ${fmt(full.ratio, 2)}× baseline req/s)`, (m) => m <= 2,
      full ? `rounds spread ${fmt(spread(full), 0)}% in CPU/req: below that, noise; node bench/concurrency-cap.js isolates the limiter` : null)
  }
  // Tracing's cost (docs/tracing.md#cost). `full` already propagates (a new trace per request): the
  // cost of propagation against no tracing at all is the `full` CPU/req of a run before it.
  for (const [kind, max, what] of [['traced', 3, 'a continued client traceparent (export off)'], ['export10', 8, 'span export at 10% sampling']]) {
    for (const store of ['embedded', 'redis']) {
      const full = byId(`full-${store}`)
      const traced = byId(`${kind}-${store}`)
      const cost = full && traced ? (traced.cpuUs / full.cpuUs - 1) * 100 : NaN
      target(`${kind}-${store}-cost`, `${what} adds ≤ ${max}% CPU per request to the full pipeline (${store})`, cost,
        (m) => `${fmt(m, 1)}% (${fmt(traced.cpuUs, 1)} vs ${fmt(full.cpuUs, 1)} µs/req)`, (m) => m <= max,
        full ? `rounds spread ${fmt(spread(full), 0)}% in CPU/req: below that, noise` : null)
    }
  }
  // The response cache (docs/caching.md), against the same request proxied (plain).
  for (const store of ['embedded', 'redis']) {
    const plain = byId(`plain-${store}`)
    const hit = byId(`cachehit-${store}`)
    const miss = byId(`cachemiss-${store}`)
    target(`cachehit-${store}-rps`, `a cache hit serves ≥ 2 × the req/s of the same request proxied (${store})`, plain && hit ? hit.rps / plain.rps : NaN,
      (m) => `${fmt(m, 2)} × (${fmt(hit.rps)} vs ${fmt(plain.rps)} req/s)`, (m) => m >= 2)
    target(`cachemiss-${store}-cost`, `a cache miss adds ≤ 5% CPU per request to the same request proxied (${store})`, plain && miss ? (miss.cpuUs / plain.cpuUs - 1) * 100 : NaN,
      (m) => `${fmt(m, 1)}% (${fmt(miss.cpuUs, 1)} vs ${fmt(plain.cpuUs, 1)} µs/req)`, (m) => m <= 5,
      `rounds spread ${fmt(plain ? spread(plain) : NaN, 0)}% in CPU/req: below that, noise`)
  }
  // A JWT consumer (repeated token) against an API-key consumer, same pipeline otherwise.
  for (const store of ['embedded', 'redis']) {
    const full = byId(`full-${store}`)
    const jwt = byId(`jwt-${store}`)
    const cost = full && jwt ? (jwt.cpuUs / full.cpuUs - 1) * 100 : NaN
    target(`jwt-${store}-cost`, `a JWT consumer (repeated token) costs ≤ 5% more CPU per request than an API key (${store})`, cost,
      (m) => `${fmt(m, 1)}% (${fmt(jwt.cpuUs, 1)} vs ${fmt(full.cpuUs, 1)} µs/req; ${fmt(jwt.ratio, 2)}× vs ${fmt(full.ratio, 2)}× baseline req/s)`, (m) => m <= 5,
      `rounds spread ${fmt(spread(full), 0)}% in CPU/req; a first-seen token: node bench/jwt-verify.js`)
  }
  const at = `${fmt(rate)} req/s = ${S.latencyFraction} × ${saturationOf === baseline ? 'baseline' : 'full (redis)'} saturation`
  const lagCaveat = lagging.length ? 'generator fell behind: unreliable' : null
  target('full-redis-p99', `full pipeline (redis): p99 added ≤ 2 ms at ${at}`, fullRedis?.addedP99, (m) => `${fmt(m, 3)} ms`, (m) => m <= 2, lagCaveat)
  target('full-embedded-p99', 'full pipeline (embedded): p99 added ≤ 2 ms at the same rate', fullEmbedded?.addedP99, (m) => `${fmt(m, 3)} ms`, (m) => m <= 2, lagCaveat)
  const baseRss = baseline.peakRssKb / 1024
  for (const c of [['full-redis', fullRedis, 'redis'], ['full-embedded', fullEmbedded, 'embedded']]) {
    target(`${c[0]}-rss`, `full pipeline (${c[2]}): peak RSS under load ≤ baseline's`, c[1] ? c[1].peakRssKb / 1024 : NaN, (m) => `${fmt(m)} MB vs ${fmt(baseRss)} MB`, (m) => m <= baseRss)
  }
  // Background calls (a key-cache refresh, a last_used_at write) amortise to well under 1% of a
  // round trip per request; "steady state" tolerates them.
  target('redis-round-trips', `≤ 1 Redis round trip per request (${monitor && !monitor.error ? `MONITOR at ${fmt(monitorRate)} req/s` : 'commandstats estimate'}; steady state, ≤ 1.01 accepted)`, fullRedis ? roundTrips : NaN, (m) => fmt(m, 3), (m) => m <= 1.01)
  target('redis-commands-saturation', `≤ 0.5 Redis commands sent per request at saturation, ${S.connections} connections, one key (${commandsSource ?? 'MONITOR'})`, fullRedis ? commandsAtSaturation : NaN, (m) => fmt(m, 3), (m) => m <= 0.5)
  const verdict = (ok) => (ok === null ? 'not measured' : ok ? 'MET' : 'NOT MET')
  console.log(table(['target', 'measured', 'result'], targets.map((t) => [t.target, t.shown, verdict(t.met) + (t.caveat ? ` (${t.caveat})` : '')]), ['l', 'r', 'l']))
  console.log(`\nTotal bench time ${fmt((Date.now() - t0) / 60000, 1)} min.`)

  if (S.json) {
    const pick = (c) => ({ id: c.id, label: c.label, store: c.store, rps: c.rps, ratio: c.ratio, thinRatio: c.thinRatio, p50: c.p50, p99: c.p99, peakRssMb: c.peakRssKb / 1024, rounds: c.rounds, latency: c.lat ?? null, addedP99: c.addedP99 ?? null })
    const targetsJson = targets.map(({ shown, ...t }) => t)
    writeFileSync(S.json, JSON.stringify({ date: new Date().toISOString(), node: process.version, settings: { ...S, only: S.only && [...S.only] }, cases: cases.map(pick), latencyRate: rate, commandstats: stats, monitor, monitorSaturation: monitorSat, targets: targetsJson, notes }, null, 2))
  }
  const broken = cases.filter((c) => c.rounds.some((x) => x.ok === 0))
  if (broken.length) throw new HarnessError(`no 2xx responses in some rounds of: ${broken.map((c) => c.id).join(', ')}`)
}

/**
 * A Redis on this machine runs beside the load generator (CPU 0), never on the proxy's core: each
 * proxy must have its core alone, and a Redis scheduled there steals it from the gateway cases
 * only. Its affinity is restored at the end. Returns the restore information, or null.
 */
async function pinLocalRedis (client) {
  if (!PIN) return null
  const host = client.options.host
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') return null
  try {
    const pid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1])
    if (!Number.isInteger(pid) || pid <= 0) return null
    const before = spawnSync('taskset', ['-a', '-p', String(pid)], { encoding: 'utf8' }).stdout.trim().split(/\s+/).pop()
    if (spawnSync('taskset', ['-a', '-p', '-c', LOAD_CPU, String(pid)], { stdio: 'ignore' }).status !== 0) return null
    return { pid, mask: before }
  } catch {
    return null
  }
}

let exitCode = 0
let cleaning = null
/** The export case's OTLP sink, closed at the end. */
let otlpSink = null
async function cleanup () {
  cleaning ??= (async () => {
    if (redisPinned) spawnSync('taskset', ['-a', '-p', redisPinned.mask, String(redisPinned.pid)], { stdio: 'ignore' })
    jwtIssuer?.close()
    await procs?.stopAll()
    await otlpSink?.close()
    if (redis) {
      try { await deleteKeys(redis, redisPrefixBase) } catch {}
      redis.disconnect()
    }
    if (tmp && !S.keepTmp) rmSync(tmp, { recursive: true, force: true })
    else if (tmp) console.error(`temporary files kept in ${tmp}`)
  })()
  return cleaning
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { cleanup().finally(() => process.exit(130)) })
}

try {
  await main()
} catch (err) {
  exitCode = 1
  console.error(`\nbench failed: ${err instanceof HarnessError ? err.message : err.stack}`)
}
await cleanup()
process.exit(exitCode)
