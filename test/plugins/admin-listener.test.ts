// The admin plane on its own listener (docs/configuration.md#load-shedding; docs/reliability.md, SC-12): with ADMIN_PORT set,
// /admin/* and /metrics answer only there, the public listener answers 404 for them, /health and
// /ready answer on both, and both listeners share one store and one metrics registry.
import t from 'tap'
import { build, routesFile } from '../support/app.js'
import { freePort } from '../support/basics.js'
import { ADMIN_PASSWORD, adminAuth, startGateway } from '../support/gateway-process.js'
import { http, metricValue, parseMetrics } from '../support/http.js'
import { rawRequest } from '../support/raw-client.js'
import { isEnvelope, service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'

const auth = { authorization: adminAuth() }

t.test('in one app: each route on its own listener, one store and one registry for both', async (t) => {
  const echo = await echoUpstream(t)
  const app = await build(t, {
    ROUTES_FILE: routesFile(t, [service('echo', '/api/echo', echo.url)]),
    ADMIN_PASSWORD,
    ADMIN_PORT: '0'
  })
  const pub = Number(new URL(await app.listen({ host: '127.0.0.1', port: 0 })).port)
  const listener = app.adminListener
  if (listener === null) throw new Error('no admin listener')
  const adminUrl = await listener.listen()
  t.match(adminUrl, /^http:\/\/127\.0\.0\.1:\d+$/, 'ADMIN_HOST defaults to 127.0.0.1')
  const adm = Number(new URL(adminUrl).port)

  for (const [path, headers] of [['/admin/apikeys', auth], ['/admin/apikeys', {}], ['/metrics', {}], ['/admin/openapi.json', auth]] as const) {
    const res = await http(pub, path, { headers })
    t.equal(res.status, 404, `public ${path} ${'authorization' in headers ? 'with' : 'without'} credentials: 404`)
    t.ok(isEnvelope(res.body), 'in the envelope')
  }
  for (const path of ['/health', '/ready']) {
    t.equal((await http(pub, path)).status, 200, `public ${path}: 200`)
    t.equal((await http(adm, path)).status, 200, `admin ${path}: 200`)
  }
  t.equal((await http(adm, '/admin/apikeys')).status, 401, 'admin listener: Basic auth still applies')
  const created = await http(adm, '/admin/apikeys', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'via-admin-port' }) })
  t.equal(created.status, 201, 'a key is created on the admin listener')
  const key = created.json().data.raw_key as string
  const proxied = await http(pub, '/api/echo/x', { headers: { 'x-api-key': key } })
  t.equal(proxied.status, 200, 'the public listener proxies with the key: one store')
  t.equal(echo.requests.length, 1)

  for (const path of ['/api/echo/x', '/info', '/services/health', '/nowhere']) {
    t.equal((await http(adm, path)).status, 404, `admin listener ${path}: 404 (no proxying there)`)
  }
  t.equal(echo.requests.length, 1, 'nothing was proxied from the admin listener')

  const bad = await rawRequest(adm, 'GET /health HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
  t.same(bad.statuses, [400], 'the admin listener has the same parser protections (CL+TE: one 400)')
  t.ok(isEnvelope(bad.responses[0]?.body.toString() ?? ''), 'in the envelope')

  const metrics = await http(adm, '/metrics')
  t.equal(metrics.status, 200, 'admin /metrics: 200')
  t.equal(metricValue(parseMetrics(metrics.body), 'gateway_http_requests_total', { path: '/api/echo', status: '200' }), 1, 'one registry: it counts the public listener\'s traffic')

  await app.close()
  t.notOk(listener.server.listening, 'closing the app closes the admin listener')
})

t.test('ADMIN_PORT already taken: listen() rejects', async (t) => {
  const taken = await build(t, { ADMIN_PORT: '0' })
  const url = await taken.adminListener?.listen() as string
  const app = await build(t, { ADMIN_PORT: new URL(url).port })
  await t.rejects(app.adminListener?.listen() as Promise<string>, { code: 'EADDRINUSE' })
})

t.test('without ADMIN_PORT everything stays on the one listener', async (t) => {
  const app = await build(t, { ADMIN_PASSWORD })
  t.equal(app.adminListener, null)
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 200)
  t.equal((await app.inject({ url: '/admin/apikeys', headers: auth })).statusCode, 200)
})

t.test('a gateway process started with ADMIN_PORT serves admin there and 404 on the public port', async (t) => {
  const adminPort = await freePort()
  const gw = await startGateway(t, { env: { ADMIN_HOST: '127.0.0.1', ADMIN_PORT: String(adminPort) } })
  const line = await gw.waitForLog((l) => l.event === 'gateway_started', 5000)
  t.equal(line?.admin_address, `http://127.0.0.1:${adminPort}`, 'the start-up line says where admin listens')
  for (const path of ['/admin/apikeys', '/metrics']) {
    t.equal((await http(gw.port, path, { headers: auth })).status, 404, `public ${path}: 404`)
  }
  t.equal((await http(adminPort, '/admin/apikeys', { headers: auth })).status, 200, 'admin port /admin/apikeys: 200')
  t.equal((await http(adminPort, '/metrics')).status, 200, 'admin port /metrics: 200')
  for (const port of [gw.port, adminPort]) {
    t.equal((await http(port, '/health')).status, 200, `/health on ${port === adminPort ? 'admin' : 'public'}`)
    t.equal((await http(port, '/ready')).status, 200, `/ready on ${port === adminPort ? 'admin' : 'public'}`)
  }
  const exit = await gw.stop()
  t.equal(exit.code, 0, 'SIGTERM closes both listeners and exits 0')
})
