// The response cache's fleet promise at full size (docs/caching.md#request-coalescing): 1,000
// concurrent identical cacheable GETs spread over two instances on one Redis reach the backend
// once, and a purge made through one instance is seen by both. The backend holds its answer until
// every request is inside a gateway, so the overlap is certain.
import t from 'tap'
import { uniquePrefix } from '../support/app.js'
import { until } from '../support/basics.js'
import { ADMIN_PASSWORD } from '../support/gateway-process.js'
import { admin, http } from '../support/http.js'
import { cachedGateway, scriptedBackend } from '../plugins/cache/gateway.js'

t.test('1,000 concurrent identical GETs over two instances on Redis: one backend request', async (t) => {
  const backend = await scriptedBackend(t)
  const held: Array<() => void> = []
  let open = false
  backend.behave((req, res, _body, n) => {
    const send = (): void => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`${req.url ?? ''} #${n}`) }
    if (open) send()
    else held.push(send)
  })
  // Both gateways, the backend and 1,000 client sockets share this process's one event loop: on a
  // busy machine it can stall past the default 500 ms Redis command timeout, and a cache whose
  // Redis does not answer in time steps aside by design (docs/caching.md#when-redis-is-down).
  // That is not what this test measures, so the timeout is raised (RATE_LIMIT_STORE_TIMEOUT_MS + 100).
  const env = { STORAGE: 'redis', REDIS_KEY_PREFIX: uniquePrefix(), ADMIN_PASSWORD, RATE_LIMIT_STORE_TIMEOUT_MS: '3000' }
  const a = await cachedGateway(t, backend.url, {}, env)
  const b = await cachedGateway(t, backend.url, {}, env)
  const N = 500
  const answers = [
    ...Array.from({ length: N }, async () => await http(a.port, '/c/fleet', { timeoutMs: 60_000 })),
    ...Array.from({ length: N }, async () => await http(b.port, '/c/fleet', { timeoutMs: 60_000 }))
  ]
  t.ok(await until(() => a.app.requestEnds.inFlight === N && b.app.requestEnds.inFlight === N, 60_000), 'every request inside a gateway')
  open = true
  for (const send of held.splice(0)) send()
  const results = await Promise.all(answers)
  const statuses: Record<string, number> = {}
  for (const r of results) { const k = `${r.status} ${String(r.headers['cache-status'])}`; statuses[k] = (statuses[k] ?? 0) + 1 }
  t.equal(backend.hits, 1, `one backend request (answers by Cache-Status: ${JSON.stringify(statuses)})`)
  t.equal(results.filter((r) => r.status === 200 && r.body === '/c/fleet #1').length, 2 * N)

  t.equal((await admin(a.port, 'DELETE', '/admin/cache/c')).status, 200)
  t.equal((await http(b.port, '/c/fleet')).headers['cache-status'], 'gateway; fwd=miss; fwd-status=200', 'the purge is seen by the other instance')
  t.equal(backend.hits, 2)
})
