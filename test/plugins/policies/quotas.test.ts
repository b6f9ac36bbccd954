// API-key quotas end to end over real sockets (docs/policies.md#quotas): 429 with Retry-After at
// the limit and X-Quota-* on every answer that reached the quota step, only admitted requests
// counted, exact across two gateway instances on one Redis, counts kept by the embedded store
// across a restart, the usage endpoint, and the create body's validation.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, routesFile, uniquePrefix, REDIS_URL } from '../../support/app.js'
import { startBackend } from '../../support/backends.js'
import { tempDir } from '../../support/basics.js'
import { http, type HttpResponse } from '../../support/http.js'
import { periodAt } from '../../../lib/quota-period.js'

const AUTH = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }

async function services (t: Test, extra: Record<string, unknown> = {}): Promise<string> {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  return routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: backend.url }], ...extra }])
}

async function up (t: Test, env: Record<string, string>): Promise<{ app: FastifyInstance, port: number }> {
  const app = await build(t, { RATE_LIMIT_BURST: '1000', RATE_LIMIT_RPM: '60000', ...env })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: Number(new URL(url).port) }
}

async function createKey (app: FastifyInstance, body: Record<string, unknown>): Promise<{ id: string, raw: string, record: Record<string, unknown> }> {
  const res = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: AUTH, payload: { name: 'quota key', ...body } })
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`)
  const data = res.json().data
  return { id: data.api_key.id, raw: data.raw_key, record: data.api_key }
}

const usage = async (app: FastifyInstance, id: string) => await app.inject({ url: `/admin/apikeys/${id}/usage`, headers: AUTH })
const call = (port: number, key: string): Promise<HttpResponse> => http(port, '/svc/x', { headers: { 'x-api-key': key } })

t.test('a key gets its limit, then 429 with Retry-After until the period ends; X-Quota-* on every answer', async (t) => {
  const { app, port } = await up(t, { ROUTES_FILE: await services(t) })
  const key = await createKey(app, { quota: { limit: 2, period: 'day', timezone: 'europe/berlin' } })
  t.same(key.record.quota, { limit: 2, period: 'day', timezone: 'Europe/Berlin' }, 'the zone in its canonical spelling')
  const before = Date.now()
  const first = await call(port, key.raw)
  const second = await call(port, key.raw)
  const third = await call(port, key.raw)
  const after = Date.now()
  t.same([first.status, second.status, third.status], [200, 200, 429])
  t.same([first, second, third].map((r) => r.headers['x-quota-remaining']), ['1', '0', '0'])
  for (const r of [first, second, third]) t.equal(r.headers['x-quota-limit'], '2')
  // The period is Berlin's day; the request ran between `before` and `after` (both in it unless a
  // midnight fell in between, which the assertion allows for).
  const ends = new Set([periodAt(before, 'day', 'Europe/Berlin').end, periodAt(after, 'day', 'Europe/Berlin').end].map((e) => String(Math.ceil(e / 1000))))
  t.ok(ends.has(String(third.headers['x-quota-reset'])), 'X-Quota-Reset is the end of the day in the key\'s zone')
  const retry = Number(third.headers['retry-after'])
  const periodEnd = Number(third.headers['x-quota-reset']) * 1000
  t.ok(retry >= 1 && retry <= Math.ceil((periodEnd - before) / 1000), `Retry-After ${retry} s reaches the period's end`)
  t.match(third.json(), { status: 'error', error: 'Too Many Requests', message: /quota/ })
  const u = (await usage(app, key.id)).json().data
  t.match(u, { limit: 2, used: 2, remaining: 0, period: 'day', timezone: 'Europe/Berlin' })
  t.equal(Date.parse(u.resets_at), periodEnd)
})

t.test('requests the rate limiter or the key check refuses are not counted; keys without a quota carry no X-Quota', async (t) => {
  const { app, port } = await up(t, { ROUTES_FILE: await services(t) })
  const limited = await createKey(app, { burst: 1, rate_limit: 1, quota: { limit: 5, period: 'hour' } })
  t.equal((await call(port, limited.raw)).status, 200)
  const refused = await call(port, limited.raw)
  t.equal(refused.status, 429, 'the rate limit refuses the second')
  t.equal(refused.headers['x-quota-remaining'], '4', 'refused before the quota step: the last count seen, unchanged')
  t.equal(refused.headers['x-quota-limit'], '5')
  t.match((await usage(app, limited.id)).json().data, { used: 1, remaining: 4, timezone: 'UTC' })

  const plain = await createKey(app, {})
  const res = await call(port, plain.raw)
  t.equal(res.status, 200)
  t.equal(res.headers['x-quota-limit'], undefined)
  t.equal(plain.record.quota, null)
  t.equal((await usage(app, plain.id)).statusCode, 404, 'no quota, no usage')
  t.equal((await usage(app, 'no-such-key')).statusCode, 404)
  t.equal((await http(port, '/svc/x')).headers['x-quota-limit'], undefined, 'anonymous requests have no quota')
})

t.test('20 concurrent requests on two instances sharing Redis against a quota of 5: exactly 5 admitted', async (t) => {
  const file = await services(t)
  const env = { ROUTES_FILE: file, STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix() }
  const a = await up(t, env)
  const b = await up(t, env)
  const key = await createKey(a.app, { quota: { limit: 5, period: 'month', timezone: 'America/New_York' } })
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => call(i % 2 === 0 ? a.port : b.port, key.raw)))
  const statuses = answers.map((r) => r.status)
  t.equal(statuses.filter((s) => s === 200).length, 5, statuses.join(' '))
  t.equal(statuses.filter((s) => s === 429).length, 15)
  t.same(answers.filter((r) => r.status === 200).map((r) => r.headers['x-quota-remaining']).sort(), ['0', '1', '2', '3', '4'])
  for (const r of answers.filter((r) => r.status === 429)) t.ok(Number(r.headers['retry-after']) >= 1)
  t.match((await usage(b.app, key.id)).json().data, { used: 5, remaining: 0, limit: 5 }, 'either instance reads the one count')
})

t.test('the embedded store keeps the count across a restart', async (t) => {
  const dataDir = tempDir(t)
  const env = { ROUTES_FILE: await services(t), DATA_DIR: dataDir }
  const first = await up(t, env)
  const key = await createKey(first.app, { quota: { limit: 3, period: 'month' } })
  t.equal((await call(first.port, key.raw)).status, 200)
  t.equal((await call(first.port, key.raw)).status, 200)
  await first.app.close()
  const second = await up(t, env)
  t.match((await usage(second.app, key.id)).json().data, { used: 2, remaining: 1 })
  const third = await call(second.port, key.raw)
  t.equal(third.status, 200)
  t.equal(third.headers['x-quota-remaining'], '0')
  t.equal((await call(second.port, key.raw)).status, 429)
})

t.test('the create body validates the quota, naming the field; the OpenAPI document has it and the usage route', async (t) => {
  const app = await build(t)
  const post = (quota: unknown) => app.inject({ method: 'POST', url: '/admin/apikeys', headers: AUTH, payload: { name: 'k', quota } })
  const cases: Array<[unknown, RegExp]> = [
    [{ limit: 5, period: 'day', timezone: 'Mars/Olympus' }, /quota\.timezone: must be an IANA time zone/],
    [{ limit: 0, period: 'day' }, /quota\.limit/],
    [{ limit: 5, period: 'week' }, /quota\.period/],
    [{ limit: 5 }, /quota\.period/],
    [{ limit: 5, period: 'day', burst: 1 }, /quota/]
  ]
  for (const [quota, message] of cases) {
    const res = await post(quota)
    t.equal(res.statusCode, 400, JSON.stringify(quota))
    t.match(res.json().message, message)
  }
  t.equal((await post(null)).statusCode, 201, 'null: no quota')
  const doc = (await app.inject({ url: '/admin/openapi.json', headers: AUTH })).json()
  t.ok(doc.paths['/admin/apikeys/{id}/usage']?.get, 'the usage route is documented')
  t.ok(JSON.stringify(doc.paths['/admin/apikeys'].post).includes('"timezone"'), 'the quota is in the create body')
})
