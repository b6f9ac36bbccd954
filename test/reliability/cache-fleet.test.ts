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
  const env = { STORAGE: 'redis', REDIS_KEY_PREFIX: uniquePrefix(), ADMIN_PASSWORD }
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
  t.equal(backend.hits, 1)
  t.equal(results.filter((r) => r.status === 200 && r.body === '/c/fleet #1').length, 2 * N)

  t.equal((await admin(a.port, 'DELETE', '/admin/cache/c')).status, 200)
  t.equal((await http(b.port, '/c/fleet')).headers['cache-status'], 'gateway; fwd=miss; fwd-status=200', 'the purge is seen by the other instance')
  t.equal(backend.hits, 2)
})
