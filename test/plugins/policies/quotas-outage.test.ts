// Quotas while Redis is down (docs/policies.md#when-the-store-fails): RATE_LIMIT_FAIL_MODE=open
// counts per instance without X-Quota-* fields; closed answers 503 to keys with a quota only.
// A private redis-server is paused or killed for real (a generous store timeout, so a busy machine
// does not turn a healthy call into a fallback); the keys were verified just before, so the key
// check's grace lets the requests reach the quota step.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, routesFile, uniquePrefix } from '../../support/app.js'
import { startBackend } from '../../support/backends.js'
import { http, type HttpResponse } from '../../support/http.js'
import { until } from '../../support/basics.js'
import { startRedis, type RedisServer } from '../../support/redis-server.js'

const AUTH = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }

async function setup (t: Test, failMode: 'open' | 'closed'): Promise<{ app: FastifyInstance, port: number, redis: RedisServer, key: (quota: unknown) => Promise<string> }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const file = routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: backend.url }], rateLimit: false }])
  const app = await build(t, { ROUTES_FILE: file, STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix(), RATE_LIMIT_FAIL_MODE: failMode, RATE_LIMIT_STORE_TIMEOUT_MS: '1000' })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const key = async (quota: unknown): Promise<string> => {
    const res = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: AUTH, payload: { name: 'k', quota } })
    return res.json().data.raw_key
  }
  return { app, port: Number(new URL(url).port), redis, key }
}

const call = (port: number, key: string): Promise<HttpResponse> => http(port, '/svc/x', { headers: { 'x-api-key': key } })

t.test('open: the quota still holds per instance while Redis is down, without X-Quota-* fields', async (t) => {
  const { port, redis, key } = await setup(t, 'open')
  const raw = await key({ limit: 2, period: 'day' })
  const first = await call(port, raw)
  t.equal(first.status, 200)
  t.equal(first.headers['x-quota-remaining'], '1', 'counted in Redis')
  redis.pause() // SIGSTOP: nothing answers; each quota call runs into RATE_LIMIT_STORE_TIMEOUT_MS
  const during = [await call(port, raw), await call(port, raw), await call(port, raw)]
  t.same(during.map((r) => r.status), [200, 429, 429], 'the instance counts on from the shared count it last saw')
  for (const r of during) t.equal(r.headers['x-quota-limit'], undefined, 'no shared count to report')
  t.ok(Number(during[2].headers['retry-after']) >= 1)
  // Redis returns: the shared count is used again, without a restart.
  redis.resume()
  let back: HttpResponse | undefined
  t.ok(await until(async () => (back = await call(port, raw)).headers['x-quota-limit'] !== undefined, 10_000, 100), 'X-Quota-* fields are back')
  // The take that ran into the pause reaches Redis when it wakes, so the shared count may be full.
  t.equal(back?.headers['x-quota-limit'], '2')
})

t.test('closed: keys with a quota get 503 while Redis is down; keys without one are served', async (t) => {
  const { app, port, redis, key } = await setup(t, 'closed')
  const limited = await key({ limit: 5, period: 'hour' })
  const plain = await key(null)
  t.equal((await call(port, limited)).status, 200)
  t.equal((await call(port, plain)).status, 200)
  await redis.kill('SIGKILL')
  const refused = await call(port, limited)
  t.equal(refused.status, 503)
  t.match(refused.json(), { status: 'error', message: /Quota accounting is temporarily unavailable/ })
  t.equal((await call(port, plain)).status, 200, 'no quota: nothing to count')
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /gateway_store_errors_total\{operation="quota"\} [1-9]/)
  await redis.restart()
})
