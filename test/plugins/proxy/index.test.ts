// Routing and header handling of the proxy (docs/proxying.md), through the real app and real backends.
import t from 'tap'
import { build, routesFile } from '../../support/app.js'
import { startBackend, status } from '../../support/backends.js'

type Echo = { method: string, url: string, headers: Record<string, string>, body: string }

t.test('default services forward the path unchanged to their backends', async (t) => {
  const auth = await startBackend()
  const users = await startBackend()
  t.teardown(() => auth.close())
  t.teardown(() => users.close())
  const app = await build(t, { AUTH_SERVICE_URL: auth.url, USER_SERVICE_URL: users.url })

  const r1 = await app.inject({ url: '/api/auth/login?next=%2Fhome&a=1' })
  t.equal(r1.statusCode, 200)
  t.equal((r1.json() as Echo).url, '/api/auth/login?next=%2Fhome&a=1')
  const r2 = await app.inject({ url: '/api/users' })
  t.equal((r2.json() as Echo).url, '/api/users')
  t.equal(auth.hits, 1)
  t.equal(users.hits, 1)
})

t.test('a prefix matches on a path segment boundary only', async (t) => {
  const users = await startBackend()
  t.teardown(() => users.close())
  const app = await build(t, { USER_SERVICE_URL: users.url })
  t.equal((await app.inject({ url: '/api/users/1' })).statusCode, 200)
  const miss = await app.inject({ url: '/api/usersX' })
  t.equal(miss.statusCode, 404)
  t.same(miss.json(), { status: 'error', error: 'Not Found', message: 'No route or service matches this path; check the URL' })
  t.equal(users.hits, 1)
})

t.test('the longest prefix wins and stripPrefix removes it', async (t) => {
  const outer = await startBackend()
  const inner = await startBackend()
  t.teardown(() => outer.close())
  t.teardown(() => inner.close())
  const ROUTES_FILE = routesFile(t, [
    { name: 'api', prefix: '/api', backends: [{ url: outer.url }] },
    { name: 'orders', prefix: '/api/orders', stripPrefix: true, backends: [{ url: inner.url }] }
  ])
  const app = await build(t, { ROUTES_FILE })
  t.equal((await app.inject({ url: '/api/orders/7?x=1' }).then((r) => r.json() as Echo)).url, '/7?x=1')
  t.equal((await app.inject({ url: '/api/orders' }).then((r) => r.json() as Echo)).url, '/')
  t.equal((await app.inject({ url: '/api/other' }).then((r) => r.json() as Echo)).url, '/api/other')
  t.equal(inner.hits, 2)
  t.equal(outer.hits, 1)
})

t.test('several backends share requests round-robin', async (t) => {
  const a = await startBackend()
  const b = await startBackend()
  t.teardown(() => a.close())
  t.teardown(() => b.close())
  const ROUTES_FILE = routesFile(t, [{ name: 's', prefix: '/s', backends: [{ url: a.url }, { url: b.url }] }])
  const app = await build(t, { ROUTES_FILE })
  for (let i = 0; i < 6; i++) t.equal((await app.inject({ url: '/s/x' })).statusCode, 200)
  t.equal(a.hits, 3)
  t.equal(b.hits, 3)
})

t.test('forwarding headers are added and the request id is kept when valid, echoed and forwarded', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const r = await app.inject({ url: '/api/users/1', headers: { 'x-request-id': 'client-id_1.2', host: 'gw.example:8081', 'x-forwarded-for': '203.0.113.9' }, remoteAddress: '127.0.0.5' })
  const seen = (r.json() as Echo).headers
  t.equal(r.headers['x-request-id'], 'client-id_1.2')
  t.equal(seen['x-request-id'], 'client-id_1.2')
  t.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.5')
  t.equal(seen['x-forwarded-proto'], 'http')
  t.equal(seen['x-forwarded-host'], 'gw.example:8081')
  t.equal(seen['x-real-ip'], '127.0.0.5')
})

t.test('an invalid X-Request-Id is replaced by a generated one', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  for (const bad of ['x'.repeat(129), 'a b', 'ünï', '']) {
    const r = await app.inject({ url: '/api/users/1', headers: { 'x-request-id': bad } })
    t.not(r.headers['x-request-id'], bad)
    t.match(String(r.headers['x-request-id']), /^[0-9a-f-]{36}$/)
    t.equal((r.json() as Echo).headers['x-request-id'], r.headers['x-request-id'])
  }
})

t.test('hop-by-hop request headers, including those named in Connection, are not forwarded', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const r = await app.inject({
    url: '/api/users/1',
    headers: { connection: 'keep-alive, X-Foo', 'x-foo': '1', 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive', proxy: 'http://evil', upgrade: 'foo', te: 'trailers, deflate;q=0.5', 'x-keep': 'yes' }
  })
  t.equal(r.statusCode, 200)
  const seen = (r.json() as Echo).headers
  for (const h of ['x-foo', 'keep-alive', 'proxy-connection', 'proxy', 'upgrade']) t.notOk(h in seen, `${h} removed`)
  t.equal(seen.te, 'trailers')
  t.equal(seen['x-keep'], 'yes')
})

t.test('a lone Keep-Alive or Upgrade request header is dropped, never a 500', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  t.equal((await app.inject({ url: '/api/users/1', headers: { 'keep-alive': 'timeout=5' } })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/users/1', headers: { upgrade: 'websocket' } })).statusCode, 200)
})

t.test('hop-by-hop response headers are not passed to the client', async (t) => {
  const backend = await startBackend((_req, res) => {
    res.writeHead(200, { connection: 'X-Hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5', 'proxy-connection': 'x', upgrade: 'h2c', trailer: 'Expires', 'x-visible': '1' })
    res.end('ok')
  })
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const r = await app.inject({ url: '/api/users/1' })
  t.equal(r.body, 'ok')
  for (const h of ['x-hop', 'keep-alive', 'proxy-connection', 'upgrade', 'trailer']) t.notOk(h in r.headers, `${h} removed`)
  t.equal(r.headers['x-visible'], '1')
})

t.test('a refused backend is a clean 502 whose body names no address, port or errno', async (t) => {
  const gone = await startBackend()
  await gone.close()
  const app = await build(t, { USER_SERVICE_URL: gone.url, RETRY_MAX_RETRIES: '0' })
  const r = await app.inject({ url: '/api/users/1' })
  t.equal(r.statusCode, 502)
  t.same(Object.keys(r.json()), ['status', 'error', 'message'])
  t.notMatch(r.body, /127\.0\.0\.1|ECONN|:\d{4,5}/)
})

t.test('a backend slower than the per-attempt timeout is a 504', async (t) => {
  const backend = await startBackend((_req, res) => { setTimeout(() => res.end('late'), 2000).unref() })
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url, UPSTREAM_TIMEOUT_MS: '200', RETRY_MAX_RETRIES: '0' })
  const r = await app.inject({ url: '/api/users/1' })
  t.equal(r.statusCode, 504)
  t.equal(r.json().status, 'error')
})

t.test('backend 5xx responses pass through with their body', async (t) => {
  const backend = await startBackend(status(500))
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const r = await app.inject({ url: '/api/users/1' })
  t.equal(r.statusCode, 500)
  t.same(r.json(), { status: 500 })
})

t.test('request bodies reach the backend intact', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const payload = JSON.stringify({ a: 1, b: 'x'.repeat(100_000) })
  const post = await app.inject({ method: 'POST', url: '/api/users', payload, headers: { 'content-type': 'application/json' } })
  t.equal((post.json() as Echo).body, payload)
  const put = await app.inject({ method: 'PUT', url: '/api/users/1', payload: '{"small":true}', headers: { 'content-type': 'application/json' } })
  t.equal((put.json() as Echo).body, '{"small":true}')
  t.equal(backend.requests[1].headers['content-type'], 'application/json')
})

t.test('a GET with a body is forwarded without Content-Length', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const r = await app.inject({ method: 'GET', url: '/api/users/1', payload: 'abcde', headers: { 'content-type': 'text/plain' } })
  t.equal(r.statusCode, 200)
  t.notOk('content-length' in backend.requests[0].headers)
  t.equal(backend.requests[0].body.length, 0)
})

t.test('gateway errors use the JSON envelope; TRACE is not forwarded', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, { USER_SERVICE_URL: backend.url })
  const r = await app.inject({ method: 'TRACE', url: '/api/users/1' })
  t.ok([404, 405].includes(r.statusCode))
  t.equal(r.json().status, 'error')
  t.equal(backend.hits, 0)
})

t.test('a service with rateLimit: false takes no tokens and sends no rate-limit headers', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const ROUTES_FILE = routesFile(t, [{ name: 'free', prefix: '/free', rateLimit: false, backends: [{ url: backend.url }] }])
  const app = await build(t, { ROUTES_FILE, RATE_LIMIT_BURST: '1', RATE_LIMIT_RPM: '1' })
  for (let i = 0; i < 3; i++) {
    const r = await app.inject({ url: '/free/x' })
    t.equal(r.statusCode, 200)
    t.notOk('x-ratelimit-limit' in r.headers)
  }
})
