// Services through the admin API (docs/admin-api.md#managing-services) on one gateway: create, proxy at once over a real
// socket, change backends under a steady 200 req/s with no failed request, delete, and the
// validation, conflict, dry-run and file-mode answers. The admin calls use inject (the gateway's
// own routes); everything proxied goes over sockets.
import { writeFileSync } from 'node:fs'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, listen, routesFile } from '../../support/app.js'
import { startBackend, status } from '../../support/backends.js'
import { tempDir } from '../../support/basics.js'
import { http } from '../../support/http.js'
import { paced } from '../../support/load.js'
import { startWsBackend } from '../../support/ws-backend.js'
import WebSocket from 'ws'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')

async function admin (app: FastifyInstance, method: 'GET' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload?: unknown) {
  return await app.inject({ method, url, headers: { authorization: AUTH }, ...(payload === undefined ? {} : { payload: payload as object }) })
}

const def = (url: string | string[], extra: Record<string, unknown> = {}) => ({
  prefix: '/api/orders',
  backends: (Array.isArray(url) ? url : [url]).map((u) => ({ url: u })),
  rateLimit: false,
  ...extra
})

async function backend (t: { teardown (fn: () => unknown): void }, tag: string) {
  const b = await startBackend((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }).end(tag) })
  t.teardown(() => b.close())
  return b
}

t.test('a service created through the admin API is proxied at once, changed, and deleted', async (t) => {
  const a = await backend(t, 'A')
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  t.equal((await http(port, '/api/orders/1')).status, 404, 'unknown before')

  const created = await admin(app, 'PUT', '/admin/services/orders', def(a.url))
  t.equal(created.statusCode, 201)
  t.equal(created.json().data.action, 'created')
  const first = await http(port, '/api/orders/1')
  t.equal(first.status, 200, 'proxied by the next request')
  t.equal(first.body, 'A')

  const list = (await admin(app, 'GET', '/admin/services')).json()
  const orders = list.data.find((s: { name: string }) => s.name === 'orders')
  t.equal(orders.version, list.version, 'the service carries the table version it was written at')
  t.match(orders.updated_at, /^\d{4}-\d\d-\d\dT/)
  t.equal(list.source, 'store')
  t.same(list.data.map((s: { name: string }) => s.name), ['auth-service', 'orders', 'user-service'], 'the default services were seeded')
  t.equal((await app.inject('/health')).json().services_version, list.version, '/health shows the table version')
  t.match((await app.inject('/metrics')).body, new RegExp(`gateway_services_version ${list.version}\\b`))

  const replaced = await admin(app, 'PUT', '/admin/services/orders', def(a.url, { stripPrefix: true }))
  t.equal(replaced.statusCode, 200, 'replacing answers 200')
  t.same(replaced.json().data.diff, { stripPrefix: { from: false, to: true } })

  const deleted = await admin(app, 'DELETE', '/admin/services/orders')
  t.equal(deleted.statusCode, 200)
  t.equal((await http(port, '/api/orders/1')).status, 404, 'gone for the next request')
  t.equal((await admin(app, 'GET', '/admin/services/orders')).statusCode, 404)
  t.equal((await admin(app, 'DELETE', '/admin/services/orders')).statusCode, 404)
  t.notMatch((await app.inject('/metrics')).body, /service="orders"/, 'its metric series went with it')
  t.notOk(app.breakers.get('orders'), 'and its breaker')
  app.gatewayMetrics.backendRequest('orders') // a request that was still in flight
  t.notMatch((await app.inject('/metrics')).body, /service="orders"/, 'and do not come back')
  t.equal((await admin(app, 'PUT', '/admin/services/orders', def(a.url))).statusCode, 201)
  t.match((await app.inject('/metrics')).body, /gateway_backend_requests_total\{service="orders"\} 0/, 'a service created again starts at 0')
})

t.test('a WebSocket service added at run time gets its series at 0, and they leave with it even while a tunnel is open', async (t) => {
  const b = await startWsBackend()
  t.teardown(() => b.close())
  const { app, url } = await listen(t)
  const wsUrl = url.replace('http:', 'ws:')
  const chat = { prefix: '/chat', backends: [{ url: b.url }], websocket: true, auth: 'none', rateLimit: false }
  const series = async () => (await app.inject('/metrics')).body.split('\n').filter((l) => l.startsWith('gateway_websocket_') && l.includes('service="chat"'))
  t.same(await series(), [], 'no series before the service exists')

  t.equal((await admin(app, 'PUT', '/admin/services/chat', chat)).statusCode, 201)
  const fresh = await series()
  t.ok(fresh.includes('gateway_websocket_tunnels_open{service="chat"} 0'), 'the tunnel gauge starts at 0')
  t.ok(fresh.includes('gateway_websocket_upgrades_total{service="chat",outcome="accepted"} 0'), 'every outcome starts at 0')

  const client = new WebSocket(`${wsUrl}/chat/room`)
  await new Promise((resolve, reject) => { client.once('open', resolve); client.once('error', reject) })
  t.ok((await series()).includes('gateway_websocket_tunnels_open{service="chat"} 1'), 'one tunnel open')

  t.equal((await admin(app, 'DELETE', '/admin/services/chat')).statusCode, 200)
  t.same(await series(), [], 'the series went with the service, though its tunnel is still open')
  const closed = new Promise((resolve) => client.once('close', resolve))
  client.close()
  await closed
  t.same(await series(), [], 'and the tunnel closing does not bring them back')

  t.equal((await admin(app, 'PUT', '/admin/services/chat', chat)).statusCode, 201)
  t.ok((await series()).includes('gateway_websocket_upgrades_total{service="chat",outcome="accepted"} 0'), 'a service created again starts at 0')
})

t.test('changing backends under 200 req/s moves the traffic with no failed request', async (t) => {
  const a = await backend(t, 'A')
  const b = await backend(t, 'B')
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  t.equal((await admin(app, 'PUT', '/admin/services/orders', def(a.url))).statusCode, 201)

  let patched = false
  const after: string[] = []
  const run = paced({
    ports: [port],
    ratePerSec: 200,
    durationMs: 3000,
    request: () => ({ path: '/api/orders/x', tag: patched ? 'after' : 'before' }),
    // Generous: on a busy machine requests queue; only an answer other than 2xx is a failure here.
    timeoutMs: 60_000
  })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const patch = await admin(app, 'PATCH', '/admin/services/orders', { backends: [{ url: b.url }] })
  patched = true
  t.equal(patch.statusCode, 200)
  t.same(Object.keys(patch.json().data.diff), ['backends'])
  const { hits, sent } = await run
  const failed = hits.filter((h) => h.status < 200 || h.status > 299)
  t.same(failed.map((h) => `${h.status} ${h.error ?? ''}`), [], `no non-2xx among ${sent} requests`)
  t.ok(sent >= 500, `steady load was sent (${sent})`)
  t.ok(a.hits > 0, 'A served before the change')
  const bBefore = b.hits
  for (let i = 0; i < 5; i++) after.push((await http(port, '/api/orders/x')).body)
  t.same(after, ['B', 'B', 'B', 'B', 'B'], 'new requests go to the new backend')
  t.ok(b.hits >= bBefore + 5)
})

t.test('a changed service keeps its breaker unless its backends changed', async (t) => {
  const a = await backend(t, 'A')
  const b = await backend(t, 'B')
  const app = await build(t)
  await admin(app, 'PUT', '/admin/services/orders', def(a.url))
  const breaker = app.breakers.get('orders')
  await admin(app, 'PATCH', '/admin/services/orders', { timeoutMs: 1234 })
  t.equal(app.breakers.get('orders'), breaker, 'same breaker after a timeout change')
  await admin(app, 'PATCH', '/admin/services/orders', { backends: [{ url: b.url }] })
  t.not(app.breakers.get('orders'), breaker, 'a fresh breaker for new backends')
})

t.test('bad bodies are 400 naming the field; prefix collisions are 409; nothing is applied', async (t) => {
  const a = await backend(t, 'A')
  const app = await build(t)
  const cases: Array<[string, unknown, RegExp]> = [
    ['bad url', def('ftp://x'), /^backends\.0\.url: /],
    ['no backends', { prefix: '/api/x', backends: [] }, /^backends: /],
    ['unknown field', { ...def(a.url), colour: 'red' }, /colour/],
    ['bad strategy', def(a.url, { strategy: 'fastest' }), /^strategy: /],
    ['name differs from the URL', def(a.url, { name: 'other' }), /^name: /],
    ['retry delays', def(a.url, { retry: { initialDelayMs: 500, maxDelayMs: 10 } }), /^retry\.maxDelayMs: /],
    // Over 2^31-1 ms a timer fires after 1 ms: every request would be a 504.
    ['timeoutMs a timer cannot hold', def(a.url, { timeoutMs: 2 ** 31 }), /^timeoutMs: must be at most 3600000 ms/],
    ['initialDelayMs a timer cannot hold', def(a.url, { retry: { initialDelayMs: 2 ** 31, maxDelayMs: 2 ** 31 } }), /^retry\.initialDelayMs: must be at most 600000 ms/],
    ['maxDelayMs a timer cannot hold', def(a.url, { retry: { maxDelayMs: 2 ** 32 } }), /^retry\.maxDelayMs: must be at most 600000 ms/]
  ]
  for (const [label, body, message] of cases) {
    const res = await admin(app, 'PUT', '/admin/services/orders', body)
    t.equal(res.statusCode, 400, label)
    t.equal(res.json().status, 'error', label)
    t.match(res.json().message, message, label)
  }
  const taken = await admin(app, 'PUT', '/admin/services/orders', def(a.url, { prefix: '/api/users' }))
  t.equal(taken.statusCode, 409)
  t.match(taken.json().message, /user-service/)
  const own = await admin(app, 'PUT', '/admin/services/orders', def(a.url, { prefix: '/admin/x' }))
  t.equal(own.statusCode, 409)
  t.match(own.json().message, /^prefix: .*\/admin/)
  t.equal((await admin(app, 'PATCH', '/admin/services/nope', { timeoutMs: 5 })).statusCode, 404)
  t.equal((await admin(app, 'PUT', '/admin/services/bad%20name', def(a.url))).statusCode, 400)
  t.equal((await admin(app, 'GET', '/admin/services/orders')).statusCode, 404, 'nothing was created')

  await admin(app, 'PUT', '/admin/services/orders', def(a.url))
  const badPatch = await admin(app, 'PATCH', '/admin/services/orders', { backends: null })
  t.equal(badPatch.statusCode, 400, 'a patch whose result is invalid')
  t.match(badPatch.json().message, /^backends: /)
  const hugePatch = await admin(app, 'PATCH', '/admin/services/orders', { timeoutMs: 2 ** 31 })
  t.equal(hugePatch.statusCode, 400, 'a patch with a timeout a timer cannot hold')
  t.match(hugePatch.json().message, /^timeoutMs: /)
  t.equal(app.services.get('orders')?.definition.backends[0].url, a.url, 'the service is unchanged')
})

t.test('dry_run validates and reports the diff without applying it', async (t) => {
  const a = await backend(t, 'A')
  const b = await backend(t, 'B')
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  const version = app.services.version
  const dry = await admin(app, 'PUT', '/admin/services/orders?dry_run=true', def(a.url))
  t.equal(dry.statusCode, 200)
  t.match(dry.json().data, { action: 'created', dry_run: true, table_version: version })
  t.equal((await http(port, '/api/orders')).status, 404, 'not applied')
  t.equal(app.services.version, version)

  await admin(app, 'PUT', '/admin/services/orders', def(a.url))
  const dryPatch = await admin(app, 'PATCH', '/admin/services/orders?dry_run=true', { backends: [{ url: b.url, weight: 3 }] })
  t.same(dryPatch.json().data.diff, { backends: { from: [{ url: a.url, weight: 1 }], to: [{ url: b.url, weight: 3 }] } })
  t.equal((await http(port, '/api/orders')).body, 'A', 'still the old backend')
  t.equal((await admin(app, 'PUT', '/admin/services/orders?dry_run=true', def(a.url, { prefix: '/api/users' }))).statusCode, 409, 'a dry run still checks conflicts')
})

t.test('services survive a restart on the embedded store', async (t) => {
  const a = await backend(t, 'A')
  const dataDir = tempDir(t)
  const first = await build(t, { DATA_DIR: dataDir })
  await admin(first, 'PUT', '/admin/services/orders', def(a.url))
  await admin(first, 'DELETE', '/admin/services/user-service')
  const version = first.services.version
  await first.close()

  const { app, url } = await listen(t, { DATA_DIR: dataDir })
  t.same(app.services.list().map((s) => s.name), ['auth-service', 'orders'], 'the deleted default is not imported again')
  t.equal(app.services.version, version)
  t.equal((await http(Number(new URL(url).port), '/api/orders/1')).body, 'A')
})

t.test('one bad stored definition never empties the table', async (t) => {
  const a = await backend(t, 'A')
  const app = await build(t)
  await admin(app, 'PUT', '/admin/services/orders', def(a.url))
  // As another instance running a different version might have written it.
  await app.store.services.put('broken', { name: 'broken', prefix: 'no-slash', backends: [] }, new Date().toISOString(), app.services.version)
  await app.services.sync()
  t.same(app.services.list().map((s) => s.name), ['auth-service', 'orders', 'user-service'], 'the bad one is skipped, the rest applied')
})

t.test('SERVICES_SOURCE=file makes ROUTES_FILE the truth: admin writes are 409', async (t) => {
  const a = await backend(t, 'A')
  const file = routesFile(t, [{ name: 'orders', ...def(a.url) }])
  const app = await build(t, { ROUTES_FILE: file })
  t.equal(app.services.source, 'file', 'the default with ROUTES_FILE')
  const put = await admin(app, 'PUT', '/admin/services/other', def(a.url, { prefix: '/api/other' }))
  t.equal(put.statusCode, 409)
  t.match(put.json().message, /SERVICES_SOURCE=file/)
  t.equal((await admin(app, 'DELETE', '/admin/services/orders')).statusCode, 409)
  t.same((await admin(app, 'GET', '/admin/services')).json().data.map((s: { name: string }) => s.name), ['orders'])
})

t.test('SERVICES_SOURCE=store with ROUTES_FILE imports the file once, into an empty store', async (t) => {
  const a = await backend(t, 'A')
  const dataDir = tempDir(t)
  const file = routesFile(t, [{ name: 'orders', ...def(a.url) }])
  const first = await build(t, { ROUTES_FILE: file, SERVICES_SOURCE: 'store', DATA_DIR: dataDir })
  t.same(first.services.list().map((s) => s.name), ['orders'])
  await admin(first, 'PUT', '/admin/services/more', def(a.url, { prefix: '/api/more' }))
  await admin(first, 'DELETE', '/admin/services/orders')
  await first.close()
  const second = await build(t, { ROUTES_FILE: file, SERVICES_SOURCE: 'store', DATA_DIR: dataDir })
  t.same(second.services.list().map((s) => s.name), ['more'], 'the file is not imported again')
})

t.test('an API key may name a service created at run time', async (t) => {
  const a = await backend(t, 'A')
  const app = await build(t)
  const before = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: { authorization: AUTH }, payload: { name: 'k', services: ['orders'] } })
  t.equal(before.statusCode, 400)
  t.match(before.json().message, /^services\.0: /)
  await admin(app, 'PUT', '/admin/services/orders', def(a.url))
  const after = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: { authorization: AUTH }, payload: { name: 'k', services: ['orders'] } })
  t.equal(after.statusCode, 201)
})

t.test('a removed service answers 404 while a request on it in flight still finishes', async (t) => {
  const slow = await startBackend((_req, res) => { setTimeout(() => res.writeHead(200).end('slow'), 400) })
  t.teardown(() => slow.close())
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  await admin(app, 'PUT', '/admin/services/orders', def(slow.url))
  const inFlight = http(port, '/api/orders/1')
  await new Promise((resolve) => setTimeout(resolve, 100))
  await admin(app, 'DELETE', '/admin/services/orders')
  t.equal((await http(port, '/api/orders/1')).status, 404, 'a new request sees the new table')
  const old = await inFlight
  t.equal(old.status, 200, 'the in-flight request finished on its table')
  t.equal(old.body, 'slow')
})

t.test('a failing backend is a 502 from its service, not from the admin API', async (t) => {
  const down = await startBackend(status(502))
  t.teardown(() => down.close())
  const { app, url } = await listen(t, { RETRY_MAX_RETRIES: '0' })
  await admin(app, 'PUT', '/admin/services/orders', def(down.url))
  t.equal((await http(Number(new URL(url).port), '/api/orders')).status, 502)
})

t.test('reloadFile (SIGHUP) applies a valid ROUTES_FILE and keeps the table for an invalid one', async (t) => {
  const a = await backend(t, 'A')
  const file = routesFile(t, [{ name: 'orders', ...def(a.url) }])
  const app = await build(t, { ROUTES_FILE: file })
  const breaker = app.breakers.get('orders')
  writeFileSync(file, JSON.stringify([{ name: 'orders', ...def(a.url) }, { name: 'more', ...def(a.url, { prefix: '/api/more' }) }]))
  t.equal(app.services.reloadFile(), true)
  t.same(app.services.list().map((s) => [s.name, s.version]), [['more', 2], ['orders', 1]], 'an unchanged service keeps its version')
  t.equal(app.breakers.get('orders'), breaker, 'and its breaker')
  writeFileSync(file, JSON.stringify([{ name: 'orders', ...def(a.url, { prefix: '/admin' }) }]))
  t.equal(app.services.reloadFile(), false)
  t.equal(app.services.version, 2, 'the running table is kept')
  t.same(app.services.list().map((s) => s.name), ['more', 'orders'])

  const store = await build(t)
  t.equal(store.services.reloadFile(), false, 'store mode ignores SIGHUP')
})
