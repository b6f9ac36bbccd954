import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import promClient from '@platformatic/prom-client'
import metrics from '../../plugins/gateway-metrics.js'
import requestEnd, { UNMATCHED_PATH } from '../../plugins/request-end.js'
import metricsRoute from '../../routes/metrics.js'
import { loadConfig } from '../../lib/config.js'
import { build as buildGateway, routesFile } from '../support/app.js'
import configPlugin from '../../plugins/config.js'
import { startBackend } from '../support/backends.js'
import { http } from '../support/http.js'
import { refusedPort } from '../support/upstreams.js'

interface Sample { name: string, labels: Record<string, string>, value: number }
interface Exposition { types: Map<string, string>, samples: Sample[] }

/** Minimal parser of the Prometheus text format: enough for names, types, labels and values. */
function parse (text: string): Exposition {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ')
      types.set(name, type)
      continue
    }
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`unparsable line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2]
    samples.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return { types, samples }
}

function find (e: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

function value (e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return find(e, name, labels)[0]?.value
}

async function scrape (app: FastifyInstance): Promise<Exposition> {
  const res = await app.inject('/metrics')
  return parse(res.body)
}

/** The metrics plugin and route with routes shaped like the gateway's: a service scope whose
 *  routes carry `metricPath`, an auth-like hook that can reject, and a plain templated route. */
async function build (t: Test): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(configPlugin, { config: loadConfig({ ADMIN_AUTH_ENABLED: 'false' }, { dotenv: false }) })
  await app.register(requestEnd)
  await app.register(metrics)
  await app.register(metricsRoute)
  app.get('/items/:id', async () => ({ ok: true }))
  app.get('/boom', async () => { throw new Error('boom') })
  app.get('/slow', async () => { await new Promise((resolve) => setTimeout(resolve, 300)); return 'late' })
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request, reply) => {
      if (request.headers['x-api-key'] === 'bad') {
        reply.code(401)
        throw Object.assign(new Error('invalid key'), { statusCode: 401 })
      }
    })
    const config = { metricPath: '/api/users' }
    scope.get('/api/users', { config }, async () => ({ ok: true }))
    scope.all('/api/users/*', { config }, async () => ({ ok: true }))
  })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

const SEED = {
  gateway_uptime_seconds: 'gauge',
  gateway_requests_in_flight: 'gauge',
  gateway_rate_limited_total: 'counter',
  gateway_http_requests_total: 'counter',
  gateway_http_request_duration_ms: 'summary',
  gateway_backend_requests_total: 'counter',
  gateway_backend_errors_total: 'counter',
  gateway_circuit_breaker_state: 'gauge',
  gateway_circuit_breaker_trips_total: 'counter'
}

t.test('exports the nine seed metrics with their types', async (t) => {
  const app = await build(t)
  await app.inject('/items/1')
  const e = await scrape(app)
  for (const [name, type] of Object.entries(SEED)) t.equal(e.types.get(name), type, name)
})

t.test('labels request counts with method, route template and status', async (t) => {
  const app = await build(t)
  await app.inject('/items/42')
  await app.inject('/items/43')
  await app.inject({ method: 'POST', url: '/api/users/7/orders?x=1' })
  const e = await scrape(app)
  t.equal(value(e, 'gateway_http_requests_total', { method: 'GET', path: '/items/:id', status: '200' }), 2)
  t.equal(value(e, 'gateway_http_requests_total', { method: 'POST', path: '/api/users', status: '200' }), 1)
  for (const s of find(e, 'gateway_http_requests_total')) t.same(Object.keys(s.labels).sort(), ['method', 'path', 'status'])
})

t.test('labels per-service metrics with the service name, created for every configured service', async (t) => {
  const app = await build(t)
  const e = await scrape(app)
  for (const name of ['gateway_backend_requests_total', 'gateway_backend_errors_total', 'gateway_circuit_breaker_trips_total', 'gateway_retries_total']) {
    t.same(find(e, name).map((s) => s.labels).sort((a, b) => a.service.localeCompare(b.service)),
      [{ service: 'auth-service' }, { service: 'user-service' }], name)
    t.ok(find(e, name).every((s) => s.value === 0), `${name} starts at 0`)
  }
  t.equal(value(e, 'gateway_circuit_breaker_state', { service: 'auth-service' }), 1, 'breakers start closed')
})

t.test('the gateway starts the store errors of every operation it uses, and the trips and retries of every service, at 0', async (t) => {
  const app = await buildGateway(t, {
    ROUTES_FILE: routesFile(t, ['a', 'b', 'c'].map((n) => ({ name: `svc-${n}`, prefix: `/${n}`, backends: [{ url: 'http://127.0.0.1:9' }] })))
  })
  const e = await scrape(app)
  const operations = find(e, 'gateway_store_errors_total').map((s) => s.labels.operation).sort()
  t.same(operations, ['failures.release', 'failures.reserve', 'keys.create', 'keys.delete', 'keys.findByHash', 'keys.get',
    'keys.list', 'keys.revoke', 'keys.touch', 'quota', 'rate_limit', 'services.read', 'services.write'], 'one series per store operation')
  t.ok(find(e, 'gateway_store_errors_total').every((s) => s.value === 0), 'all at 0')
  for (const name of ['gateway_circuit_breaker_trips_total', 'gateway_retries_total']) {
    t.same(find(e, name).map((s) => [s.labels.service, s.value]).sort(), [['svc-a', 0], ['svc-b', 0], ['svc-c', 0]], `${name} per service at 0`)
  }
})

t.test('summarises durations in milliseconds with quantiles 0.5, 0.95 and 0.99', async (t) => {
  const app = await build(t)
  for (let i = 0; i < 20; i++) await app.inject('/items/1')
  const e = await scrape(app)
  const quantiles = find(e, 'gateway_http_request_duration_ms', { path: '/items/:id' })
  t.same(quantiles.map((s) => s.labels.quantile), ['0.5', '0.95', '0.99'])
  t.ok(quantiles.every((s) => s.value > 0 && s.value < 60_000), 'values are milliseconds')
  t.equal(value(e, 'gateway_http_request_duration_ms_count', { path: '/items/:id' }), 20)
})

t.test('exports a duration histogram in seconds that instances can aggregate', async (t) => {
  const app = await build(t)
  await app.inject('/items/1')
  const e = await scrape(app)
  t.equal(e.types.get('gateway_http_request_duration_seconds'), 'histogram')
  const buckets = find(e, 'gateway_http_request_duration_seconds_bucket', { method: 'GET', path: '/items/:id' })
  t.ok(buckets.length > 5)
  t.equal(buckets.find((b) => b.labels.le === '+Inf')?.value, 1)
  t.ok((value(e, 'gateway_http_request_duration_seconds_sum', { path: '/items/:id' }) ?? 1) < 1, 'seconds, not ms')
})

t.test('exports Node process metrics', async (t) => {
  const app = await build(t)
  const e = await scrape(app)
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
    t.ok(find(e, name).length > 0, name)
  }
})

t.test('serves Prometheus text by default and JSON with Accept: application/json', async (t) => {
  const app = await build(t)
  await app.inject('/items/1')
  const text = await app.inject('/metrics')
  t.equal(text.statusCode, 200)
  t.match(text.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.equal(text.headers['cache-control'], 'no-store')
  const prom = await app.inject({ url: '/metrics', headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' } })
  t.match(prom.headers['content-type'], /^text\/plain/, 'a Prometheus scrape gets text')

  const json = await app.inject({ url: '/metrics', headers: { accept: 'application/json' } })
  t.equal(json.statusCode, 200)
  t.match(json.headers['content-type'], /^application\/json/)
  const body = json.json() as Array<{ name: string, type: string, values: Array<{ labels: Record<string, string>, value: number }> }>
  t.ok(Array.isArray(body))
  const requests = body.find((m) => m.name === 'gateway_http_requests_total')
  t.equal(requests?.type, 'counter')
  t.ok(requests?.values.some((v) => v.labels.path === '/items/:id' && v.value === 1))
  t.equal(body.find((m) => m.name === 'gateway_http_request_duration_ms')?.type, 'summary')
})

t.test('negotiates the format from media ranges with q-values, case-insensitively, and says Vary: Accept', async (t) => {
  const app = await build(t)
  const cases: Array<[string | undefined, 'text' | 'json']> = [
    [undefined, 'text'],
    ['*/*', 'text'],
    ['application/json', 'json'],
    ['APPLICATION/JSON', 'json'],
    ['Application/Json', 'json'],
    ['application/json;q=0.1, text/plain', 'text'],
    ['text/plain;q=0.2, application/json;q=0.9', 'json'],
    ['application/*', 'json'],
    ['text/html, application/json;q=0', 'text'],
    ['application/jsonx', 'text'],
    ['image/png', 'text']
  ]
  for (const [accept, want] of cases) {
    const res = await app.inject({ url: '/metrics', headers: accept === undefined ? {} : { accept } })
    t.equal(res.statusCode, 200, `${accept}`)
    t.match(res.headers['content-type'], want === 'json' ? /^application\/json/ : /^text\/plain/, `${accept ?? '(none)'} -> ${want}`)
    t.match(String(res.headers.vary), /\baccept\b/i, `${accept ?? '(none)'}: Vary: Accept`)
  }
})

t.test('gives every unmatched path one label value', async (t) => {
  const app = await build(t)
  await app.inject('/no/such/thing')
  await app.inject('/another/one?apikey=x')
  const e = await scrape(app)
  t.equal(value(e, 'gateway_http_requests_total', { method: 'GET', path: UNMATCHED_PATH, status: '404' }), 2)
})

// 5,000 random requests show that no label takes a request's own values; the 50,000 of LD-09, with
// Redis and RSS, are the long tier's (test/reliability/abuse.test.ts).
t.test('5,000 requests with random paths, keys and client addresses add no series', async (t) => {
  const app = await build(t)
  const shapes = ['/items/1', '/api/users', '/api/users/1', '/nowhere']
  for (const url of shapes) await app.inject(url)
  await app.inject({ url: '/api/users/1', headers: { 'x-api-key': 'bad' } })
  await scrape(app) // the scrape's own series exist from here on
  const series = (e: Exposition) => e.samples.filter((s) => s.name.startsWith('gateway_')).map((s) => `${s.name}${JSON.stringify(s.labels)}`).sort()
  const before = series(await scrape(app))

  const rnd = () => Math.random().toString(36).slice(2)
  const total = 5_000
  const batch = 500
  for (let i = 0; i < total; i += batch) {
    const work = []
    for (let j = 0; j < batch; j++) {
      const n = i + j
      const shape = n % 5
      const url = shape === 0
        ? `/${rnd()}/${rnd()}?apikey=${rnd()}`
        : shape === 1 ? `/items/${rnd()}?q=${rnd()}` : shape === 2 ? `/api/users/${rnd()}/${rnd()}` : shape === 3 ? `/api/users?token=${rnd()}` : `/${rnd()}`
      const headers: Record<string, string> = { 'x-forwarded-for': `10.${n % 256}.${(n >> 8) % 256}.1` }
      if (shape === 2 && n % 2 === 0) headers['x-api-key'] = 'bad'
      work.push(app.inject({ url, headers }))
    }
    await Promise.all(work)
    // inject() can complete without leaving the microtask queue: let setImmediate callbacks run,
    // or every finished request stays referenced until the loop ends (~10 KB each).
    await new Promise((resolve) => setImmediate(resolve))
  }
  const after = await scrape(app)
  t.same(series(after), before, 'same series before and after')
  const counted = find(after, 'gateway_http_requests_total').reduce((sum, s) => sum + s.value, 0)
  t.equal(counted, total + shapes.length + 1 + 2, 'every request counted (plus the first two scrapes)')
})

t.test('never puts a key, a client address or a raw URL in a label', async (t) => {
  const app = await build(t)
  const canary = 'gw_CANARYcanaryCANARYcanaryCANARYcanaryCANARYcan1234ab'
  await app.inject({ url: `/api/users/${canary}?apikey=${canary}`, headers: { 'x-api-key': canary, 'x-forwarded-for': '203.0.113.77' } })
  await app.inject({ url: `/${canary}`, headers: { authorization: `Bearer ${canary}` } })
  const text = (await app.inject('/metrics')).body
  t.notOk(text.includes('CANARY'), 'no key')
  t.notOk(text.includes('203.0.113.77') || text.includes('127.0.0.1'), 'no address')
  t.notOk(text.includes('/api/users/'), 'no raw URL')
})

t.test('counts requests rejected by a hook and failed by a handler', async (t) => {
  const app = await build(t)
  await app.inject({ url: '/api/users/1', headers: { 'x-api-key': 'bad' } })
  await app.inject('/boom')
  const e = await scrape(app)
  t.equal(value(e, 'gateway_http_requests_total', { path: '/api/users', status: '401' }), 1)
  t.equal(value(e, 'gateway_http_requests_total', { path: '/boom', status: '500' }), 1)
  t.equal(value(e, 'gateway_requests_in_flight'), 1, 'only the scrape itself is in flight')
})

t.test('keeps the in-flight gauge right when an earlier hook rejects a request', async (t) => {
  const app = Fastify()
  app.addHook('onRequest', async (request, reply) => {
    if (request.headers['x-reject'] !== undefined) {
      reply.code(400)
      throw Object.assign(new Error('bad framing'), { statusCode: 400 })
    }
  })
  await app.register(configPlugin, { config: loadConfig({ ADMIN_AUTH_ENABLED: 'false' }, { dotenv: false }) })
  await app.register(requestEnd)
  await app.register(metrics)
  await app.register(metricsRoute)
  app.get('/ok', async () => 'ok')
  t.teardown(() => app.close())
  await app.inject({ url: '/ok', headers: { 'x-reject': '1' } })
  await app.inject({ url: '/ok', headers: { 'x-reject': '1' } })
  await app.inject('/ok')
  const e = await scrape(app)
  t.equal(value(e, 'gateway_http_requests_total', { path: '/ok', status: '400' }), 2, 'rejections are counted')
  t.equal(value(e, 'gateway_requests_in_flight'), 1, 'only the scrape: never negative')
})

t.test('decorator methods move their series', async (t) => {
  const app = await build(t)
  const m = app.gatewayMetrics
  m.rateLimited()
  m.rateLimited()
  m.backendRequest('user-service')
  m.backendRequest('user-service')
  m.backendRequest('user-service')
  m.backendError('user-service')
  m.breakerTrip('user-service')
  m.breakerState('user-service', 'open')
  m.breakerState('auth-service', 'half-open')
  m.retry('auth-service')
  m.storeError('rate_limit')
  m.storeError('rate_limit')
  m.storeError('keys.get')
  m.rateLimitFailOpen()
  m.backendRequest('not-configured')
  const e = await scrape(app)
  t.equal(value(e, 'gateway_rate_limited_total'), 2)
  t.equal(value(e, 'gateway_backend_requests_total', { service: 'user-service' }), 3)
  t.equal(value(e, 'gateway_backend_requests_total', { service: 'auth-service' }), 0)
  t.equal(value(e, 'gateway_backend_requests_total', { service: 'not-configured' }), 1)
  t.equal(value(e, 'gateway_backend_errors_total', { service: 'user-service' }), 1)
  t.equal(value(e, 'gateway_circuit_breaker_trips_total', { service: 'user-service' }), 1)
  t.equal(value(e, 'gateway_circuit_breaker_state', { service: 'user-service' }), 0)
  t.equal(value(e, 'gateway_circuit_breaker_state', { service: 'auth-service' }), 0.5)
  t.equal(value(e, 'gateway_retries_total', { service: 'auth-service' }), 1)
  t.equal(value(e, 'gateway_store_errors_total', { operation: 'rate_limit' }), 2)
  t.equal(value(e, 'gateway_store_errors_total', { operation: 'keys.get' }), 1)
  t.equal(value(e, 'gateway_rate_limit_fail_open_total'), 1)
  m.breakerState('user-service', 'closed')
  t.equal(value(await scrape(app), 'gateway_circuit_breaker_state', { service: 'user-service' }), 1)
})

t.test('reports uptime in seconds', async (t) => {
  const app = await build(t)
  const first = value(await scrape(app), 'gateway_uptime_seconds') ?? -1
  await new Promise((resolve) => setTimeout(resolve, 30))
  const second = value(await scrape(app), 'gateway_uptime_seconds') ?? -1
  t.ok(first >= 0 && first < 3600)
  t.ok(second > first)
})

t.test('two apps in one process keep separate registries', async (t) => {
  const a = await build(t)
  const b = await build(t)
  a.gatewayMetrics.rateLimited()
  await a.inject('/items/1')
  t.not(a.gatewayMetrics.registry, b.gatewayMetrics.registry)
  t.equal(value(await scrape(a), 'gateway_rate_limited_total'), 1)
  t.equal(value(await scrape(b), 'gateway_rate_limited_total'), 0)
  t.equal(find(await scrape(b), 'gateway_http_requests_total', { path: '/items/:id' }).length, 0)
  const global = await promClient.register.getMetricsAsJSON()
  t.same(global.filter((m) => m.name.startsWith('gateway_')), [], 'nothing in the global registry')
})

t.test('tracks requests in flight and releases those whose client disconnects', async (t) => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const req = httpRequest({ host: '127.0.0.1', port, path: '/slow' })
  req.on('error', () => {})
  req.end()
  // Poll (no timing assumptions): the slow request shows up in flight, then the client leaves.
  for (let i = 0; i < 200 && (value(await scrape(app), 'gateway_requests_in_flight') ?? 0) < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.equal(value(await scrape(app), 'gateway_requests_in_flight'), 2, 'the slow request and the scrape')
  req.destroy()
  let e = await scrape(app)
  for (let i = 0; i < 200 && value(e, 'gateway_requests_in_flight') !== 1; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
    e = await scrape(app)
  }
  t.equal(value(e, 'gateway_requests_in_flight'), 1, 'only the scrape is left')
  t.equal(value(e, 'gateway_http_requests_total', { path: '/slow', status: '499' }), 1, 'counted as client closed (499)')
  await new Promise((resolve) => setTimeout(resolve, 350))
  e = await scrape(app)
  t.equal(find(e, 'gateway_http_requests_total', { path: '/slow' }).length, 1, 'not counted again when the handler finishes')
  t.equal(value(e, 'gateway_requests_in_flight'), 1)
})

t.test('every live service\'s 5xx request series exist at 0 before its first error, and follow the service table', async (t) => {
  const ok = await startBackend()
  t.teardown(() => ok.close())
  const down = await refusedPort()
  const app = await buildGateway(t, { AUTH_SERVICE_URL: down.url, USER_SERVICE_URL: ok.url, RETRY_MAX_RETRIES: '0', CB_MAX_FAILURES: '1000', RATE_LIMIT_BURST: '1000' })
  const port = Number(new URL(await app.listen({ host: '127.0.0.1', port: 0 })).port)
  const statuses = ['500', '502', '503', '504']
  const fivexx = (e: Exposition, path: string, method = 'GET') =>
    statuses.map((status) => value(e, 'gateway_http_requests_total', { method, path, status }))

  let e = await scrape(app)
  for (const path of ['/api/auth', '/api/users']) t.same(fivexx(e, path), [0, 0, 0, 0], `${path}: GET 500/502/503/504 at 0 before any request`)
  t.same(find(e, 'gateway_http_requests_total', { path: '/health' }), [], 'not for the gateway\'s own routes')
  t.equal(value(e, 'gateway_http_requests_total', { method: 'POST', path: '/api/users', status: '502' }), undefined, 'other methods: not before their first request')

  t.equal((await http(port, '/api/users/1', { method: 'POST', body: 'x' })).status, 200)
  e = await scrape(app)
  t.same(fivexx(e, '/api/users', 'POST'), [0, 0, 0, 0], 'a service\'s first POST starts its POST 5xx series at 0')

  // The burst the dashboard and the 5xx alert must see: counted on a series that already existed.
  for (let i = 0; i < 3; i++) t.equal((await http(port, '/api/auth/login')).status, 502)
  e = await scrape(app)
  t.equal(value(e, 'gateway_http_requests_total', { method: 'GET', path: '/api/auth', status: '502' }), 3)

  const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')
  const put = await app.inject({ method: 'PUT', url: '/admin/services/orders', headers: { authorization: AUTH }, payload: { prefix: '/api/orders', backends: [{ url: ok.url }] } })
  t.equal(put.statusCode, 201)
  t.same(fivexx(await scrape(app), '/api/orders'), [0, 0, 0, 0], 'a service added at run time appears at 0')
  await app.inject({ method: 'DELETE', url: '/admin/services/orders', headers: { authorization: AUTH } })
  t.same(find(await scrape(app), 'gateway_http_requests_total', { path: '/api/orders' }), [], 'and its series nothing counted on go with it')
  await app.inject({ method: 'DELETE', url: '/admin/services/auth-service', headers: { authorization: AUTH } })
  e = await scrape(app)
  t.equal(value(e, 'gateway_http_requests_total', { method: 'GET', path: '/api/auth', status: '502' }), 3, 'a removed service keeps the series it counted on')
  t.equal(value(e, 'gateway_http_requests_total', { method: 'GET', path: '/api/auth', status: '504' }), undefined)
})
