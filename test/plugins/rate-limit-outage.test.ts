// The rate limiter when Redis fails (docs/architecture.md#the-store, docs/proxying.md#rate-limits; docs/reliability.md, FT-09, FT-11, LD-05): each
// test starts its own redis-server and kills, pauses or restarts it by PID.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { RedisBuckets } from '../../plugins/store/buckets-redis.js'
import { startRedis } from '../support/redis-server.js'
import { rateLimitApp } from '../support/rate-limit-app.js'
import { freePort } from '../support/basics.js'

const LIMIT_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit-policy', 'ratelimit']
const hasLimitHeaders = (res: LightMyRequestResponse) => LIMIT_HEADERS.some((h) => res.headers[h] !== undefined)

function redisEnv (url: string, extra: Record<string, string> = {}): Record<string, string> {
  // 1 token per minute: nothing refills while a test runs, so every count is exact.
  return { STORAGE: 'redis', REDIS_URL: url, REDIS_KEY_PREFIX: `gwtest:${randomBytes(4).toString('hex')}:`, RATE_LIMIT_BURST: '3', RATE_LIMIT_RPM: '1', ...extra }
}

function logSink () {
  const lines: Array<{ level: number, msg: string }> = []
  return { lines, logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } }
}

async function storeReady (app: FastifyInstance): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!await app.store.ping()) {
    if (Date.now() > deadline) throw new Error('store not ready within 10 s')
    await sleep(20)
  }
}

/** Injects and measures how long the gateway took to answer. */
async function timed (app: FastifyInstance, url: string) {
  const started = performance.now()
  const res = await app.inject(url)
  return { res, ms: performance.now() - started }
}

t.test('fail open: with Redis killed, each instance still limits, without RateLimit fields, and recovers', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sink = logSink()
  const { app, metrics } = await rateLimitApp(t, { env: redisEnv(redis.url), plugin: { storeRetryMs: 200 }, logger: sink.logger })
  await storeReady(app)

  const before = await app.inject('/svc/x')
  t.equal(before.headers['x-ratelimit-remaining'], '2', 'Redis answered')

  await redis.kill('SIGKILL')
  const outage = []
  for (let i = 0; i < 6; i++) outage.push(await timed(app, '/svc/x'))
  t.same(outage.map((o) => o.res.statusCode), [200, 200, 200, 429, 429, 429], 'a fresh per-instance bucket of burst 3')
  t.same(outage.map((o) => hasLimitHeaders(o.res)), Array(6).fill(false), 'no RateLimit fields while failing open')
  t.equal(outage[3].res.headers['retry-after'], '60', 'a 429 still says when to retry')
  t.equal(metrics.failOpen, 6)
  t.equal(metrics.rateLimited, 3)
  t.ok(metrics.storeErrors.length >= 1 && metrics.storeErrors.every((op) => op === 'rate_limit'), `store errors: ${metrics.storeErrors.length}`)
  const slowest = Math.max(...outage.map((o) => o.ms))
  t.comment(`outage answers in ${outage.map((o) => o.ms.toFixed(1)).join(', ')} ms`)
  t.ok(slowest < 5000, 'no request hangs on the dead store')
  const warnings = sink.lines.filter((l) => l.msg.startsWith('rate-limit store unavailable'))
  t.equal(warnings.length, 1, 'one warning for the outage, not one per request')

  await redis.restart() // same port, empty data
  const deadline = Date.now() + 10_000
  let back: LightMyRequestResponse | undefined
  while (Date.now() < deadline) {
    const res = await app.inject('/svc/y')
    if (hasLimitHeaders(res)) { back = res; break }
    await sleep(50)
  }
  t.ok(back !== undefined, 'Redis is used again without rebuilding the app')
  t.equal(back?.statusCode, 200)
  t.equal(back?.headers['x-ratelimit-remaining'], '2', 'the restarted Redis holds a fresh bucket')
  t.ok(sink.lines.some((l) => l.msg === 'rate-limit store reachable again'))
})

t.test('fail closed: with Redis down, requests get 503 with Retry-After, not a free pass', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { app, metrics } = await rateLimitApp(t, { env: redisEnv(redis.url, { RATE_LIMIT_FAIL_MODE: 'closed' }), plugin: { storeRetryMs: 200 } })
  await storeReady(app)
  t.equal((await app.inject('/svc/x')).statusCode, 200)

  await redis.kill('SIGKILL')
  for (let i = 0; i < 3; i++) {
    const res = await app.inject('/svc/x')
    t.equal(res.statusCode, 503)
    t.same(res.json(), { status: 'error', error: 'Service Unavailable', message: 'Rate limiting is temporarily unavailable; retry shortly' })
    t.equal(res.headers['retry-after'], '1')
    t.notOk(hasLimitHeaders(res))
  }
  t.equal(metrics.failOpen, 0)
})

t.test('a gateway started while Redis is down limits per instance, then uses Redis once it comes up', async (t) => {
  const port = await freePort()
  const { app } = await rateLimitApp(t, { env: redisEnv(`redis://127.0.0.1:${port}`), plugin: { storeRetryMs: 200 } })
  const early = await timed(app, '/svc/x')
  t.equal(early.res.statusCode, 200)
  t.notOk(hasLimitHeaders(early.res))

  const redis = await startRedis({ port })
  t.teardown(() => redis.stop())
  const deadline = Date.now() + 10_000
  let ok = false
  while (!ok && Date.now() < deadline) {
    ok = hasLimitHeaders(await app.inject('/svc/x'))
    if (!ok) await sleep(50)
  }
  t.ok(ok, 'RateLimit fields once Redis answers')
})

t.test('a paused Redis costs a request at most the limiter timeout, and leaves no pile of stale takes', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // A client with no command timeout at all: only the limiter's own 100 ms bound can save a request.
  const client = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false, lazyConnect: true })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => client.disconnect())
  const { app, metrics } = await rateLimitApp(t, {
    env: { RATE_LIMIT_BURST: '5', RATE_LIMIT_RPM: '1' },
    kind: 'redis',
    buckets: new RedisBuckets(client, { keyPrefix: 'gw:' }),
    plugin: { storeRetryMs: 1000 }
  })
  t.equal((await app.inject('/svc/x')).headers['x-ratelimit-remaining'], '4')

  redis.pause()
  const paused = []
  for (let i = 0; i < 10; i++) paused.push(await timed(app, '/svc/x'))
  redis.resume()
  t.comment(`answers while paused: ${paused.map((p) => p.ms.toFixed(1)).join(', ')} ms`)
  t.same(paused.map((p) => p.res.statusCode), [200, 200, 200, 200, 200, 429, 429, 429, 429, 429])
  t.ok(Math.max(...paused.map((p) => p.ms)) < 5000, 'nothing waits for the paused Redis')
  t.equal(metrics.storeErrors.length, 1, 'one probe timed out; the others went straight to the fallback')

  await sleep(1100) // past storeRetryMs: the next request probes Redis again
  const after = await app.inject('/svc/x')
  t.ok(hasLimitHeaders(after), 'Redis is used again')
  // 5 - 1 (before) - 1 (the probe sent during the pause, run on resume) - 1 (this one).
  t.equal(after.headers['x-ratelimit-remaining'], '2', 'exactly one stale take reached Redis')
})
