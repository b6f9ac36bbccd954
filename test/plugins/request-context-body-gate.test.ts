// A declared body over the limit is refused in one place, before the request takes anything: a
// full service answers it 413 (what is wrong with the request), not 503, and its slot and breaker
// stay untouched. Over real sockets.
import t from 'tap'
import { listen, routesFile } from '../support/app.js'
import { slow, startBackend } from '../support/backends.js'
import { until } from '../support/basics.js'
import { http, parseMetrics, metricValue } from '../support/http.js'

t.test('a declared length over BODY_LIMIT_BYTES is 413 before the concurrency cap and the breaker', async (t) => {
  const backend = await startBackend(slow(1500))
  t.teardown(() => backend.close())
  const { app } = await listen(t, {
    BODY_LIMIT_BYTES: '1000',
    CB_MAX_FAILURES: '1',
    ROUTES_FILE: routesFile(t, [{ name: 'one', prefix: '/one', backends: [{ url: backend.url }], auth: 'none', rateLimit: false, maxConcurrent: 1 }])
  })
  const port = (app.server.address() as { port: number }).port
  const holding = http(port, '/one/hold')
  await until(() => backend.hits >= 1)
  const big = await http(port, '/one/upload', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(2000) })
  t.equal(big.status, 413, 'the body is too large, whatever the service\'s load')
  t.equal(big.headers.connection, 'close')
  t.equal(big.json().status, 'error')
  t.equal((await holding).status, 200)
  const ok = await http(port, '/one/small', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(500) })
  t.equal(ok.status, 200, 'a body within the limit is forwarded')
  t.equal(backend.requests.filter((r) => r.url === '/one/upload').length, 0, 'the large body never reached the backend')
  const m = parseMetrics((await http(port, '/metrics')).body)
  t.equal(metricValue(m, 'gateway_requests_shed_total', { service: 'one' }), 0, 'nothing was shed')
  t.equal(metricValue(m, 'gateway_circuit_breaker_state', { service: 'one' }), 1, 'the breaker is closed')
})
