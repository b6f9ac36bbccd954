// /health, /ready, /info, /services/health and CORS (docs/admin-api.md#health-and-info, docs/operations.md).
import t from 'tap'
import { build, routesFile } from '../support/app.js'
import { startBackend, status } from '../support/backends.js'

t.test('/health answers ok while serving and draining once shutdown began', async (t) => {
  const app = await build(t)
  const ok = await app.inject({ url: '/health' })
  t.equal(ok.statusCode, 200)
  t.equal(ok.json().status, 'ok')
  app.lifecycle.startDraining()
  const draining = await app.inject({ url: '/health' })
  t.equal(draining.statusCode, 503)
  t.same(draining.json(), { status: 'draining' })
  t.equal((await app.inject({ url: '/ready' })).statusCode, 503)
})

t.test('/ready is 200 with a reachable store and says which store', async (t) => {
  const app = await build(t)
  const r = await app.inject({ url: '/ready' })
  t.equal(r.statusCode, 200)
  t.same(r.json().store, { kind: 'embedded', status: 'up' })
})

t.test('/ready is 503 when Redis is unreachable, and the gateway still starts', async (t) => {
  const app = await build(t, { STORAGE: 'redis', REDIS_URL: 'redis://127.0.0.1:1' })
  const r = await app.inject({ url: '/ready' })
  t.equal(r.statusCode, 503)
  t.same(r.json().store, { kind: 'redis', status: 'down' })
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
})

t.test('/info lists the services in the seed shape', async (t) => {
  const app = await build(t, { USER_SERVICE_URL: 'http://127.0.0.1:9' })
  const body = (await app.inject({ url: '/info' })).json()
  t.equal(body.status, 'ok')
  t.type(body.version, 'string')
  const users = body.services.find((s: { name: string }) => s.name === 'user-service')
  t.match(users, { name: 'user-service', path_prefix: '/api/users', target_url: 'http://127.0.0.1:9', status: 'unknown' })
})

t.test('active checks mark backends healthy or unhealthy with timing and error', async (t) => {
  const good = await startBackend()
  const bad = await startBackend(status(500), { health: 'scripted' })
  t.teardown(() => good.close())
  t.teardown(() => bad.close())
  const ROUTES_FILE = routesFile(t, [{ name: 's', prefix: '/s', backends: [{ url: good.url }, { url: bad.url }, { url: 'http://127.0.0.1:9' }] }])
  const app = await build(t, { ROUTES_FILE })
  await app.backendHealth.checkAll()
  const body = (await app.inject({ url: '/services/health' })).json()
  const backends = body.services[0].backends
  t.equal(backends[0].status, 'healthy')
  t.equal(backends[0].error, null)
  t.type(backends[0].response_time_ms, 'number')
  t.type(backends[0].last_check, 'string')
  t.equal(backends[1].status, 'unhealthy')
  t.match(backends[1].error, /500/)
  t.equal(backends[2].status, 'unhealthy')
  t.equal(backends[2].error, 'connection refused')
  t.equal(body.services[0].status, 'healthy')
})

t.test('unhealthy backends are skipped while a healthy one exists', async (t) => {
  const good = await startBackend()
  const sick = await startBackend(status(200), { health: 'scripted' })
  t.teardown(() => good.close())
  t.teardown(() => sick.close())
  sick.behave((req, res) => { res.writeHead(req.url === '/health' ? 503 : 200).end('sick') })
  const ROUTES_FILE = routesFile(t, [{ name: 's', prefix: '/s', backends: [{ url: good.url }, { url: sick.url }] }])
  const app = await build(t, { ROUTES_FILE })
  await app.backendHealth.checkAll()
  const before = sick.hits
  for (let i = 0; i < 6; i++) t.equal((await app.inject({ url: '/s/x' })).statusCode, 200)
  t.equal(sick.hits, before, 'no proxied request went to the unhealthy backend')
  t.equal(good.hits, 6)
})

t.test('a refused connection marks the backend unhealthy at once (passive check)', async (t) => {
  const good = await startBackend()
  t.teardown(() => good.close())
  const ROUTES_FILE = routesFile(t, [{ name: 's', prefix: '/s', backends: [{ url: 'http://127.0.0.1:9' }, { url: good.url }] }])
  const app = await build(t, { ROUTES_FILE, RETRY_MAX_RETRIES: '0' })
  const first = await app.inject({ url: '/s/x' })
  t.equal(first.statusCode, 502)
  const services = (await app.inject({ url: '/services/health' })).json().services
  t.equal(services[0].backends[0].status, 'unhealthy')
  for (let i = 0; i < 4; i++) t.equal((await app.inject({ url: '/s/x' })).statusCode, 200)
})

t.test('CORS preflights are answered by the gateway before any key check', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url, API_KEY_REQUIRED: 'true', CORS_ORIGINS: 'https://app.example.com' })
  const pre = await app.inject({
    method: 'OPTIONS',
    url: '/api/users/1',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-api-key' }
  })
  t.equal(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], 'https://app.example.com')
  t.equal(backend.hits, 0)
  const other = await app.inject({ method: 'OPTIONS', url: '/api/users/1', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } })
  t.notOk(other.headers['access-control-allow-origin'])
})

t.test('an OPTIONS with Origin but no Access-Control-Request-Method is not a preflight: it is served as a request, never a plain-text 400', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url, CORS_ORIGINS: 'https://app.example.com' })
  const proxied = await app.inject({ method: 'OPTIONS', url: '/api/users/1', headers: { origin: 'https://app.example.com' } })
  t.equal(proxied.statusCode, 200, 'proxied like any request')
  t.equal(backend.hits, 1, 'the backend answered it')
  t.equal(backend.requests[0].method, 'OPTIONS')
  t.equal(proxied.headers['access-control-allow-origin'], 'https://app.example.com', 'with the CORS headers of a simple request')
  t.notOk(proxied.headers['access-control-allow-methods'], 'and no preflight headers')
  for (const url of ['/health', '/admin/apikeys', '/nowhere']) {
    const own = await app.inject({ method: 'OPTIONS', url, headers: { origin: 'https://app.example.com' } })
    t.notMatch(own.headers['content-type'] ?? '', /text\/plain/, `${url}: no plain-text answer`)
    t.match(own.json(), { status: 'error', error: String, message: String }, `${url}: the JSON envelope (${own.statusCode})`)
  }
  const noOrigin = await app.inject({ method: 'OPTIONS', url: '/health' })
  t.match(noOrigin.json(), { status: 'error' }, 'without Origin too')
})
