// Request coalescing (docs/caching.md#request-coalescing): concurrent misses for one URL cause one
// backend request — per instance on the embedded store, across instances on Redis. The backend
// holds its answer until every request is inside the gateway(s), so the overlap is certain.
import { request as httpRequest } from 'node:http'
import t from 'tap'
import { until } from '../../support/basics.js'
import { http } from '../../support/http.js'
import { cachedGateway, scriptedBackend } from './gateway.js'
import type { Backend } from '../../support/backends.js'

/** A backend that answers nothing until release() is called. */
async function heldBackend (t: Parameters<typeof scriptedBackend>[0]): Promise<{ backend: Backend, release: () => void }> {
  const backend = await scriptedBackend(t)
  const held: Array<() => void> = []
  let open = false
  backend.behave((req, res, _body, n) => {
    const send = (): void => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end(`${req.url ?? ''} #${n}`) }
    if (open) send()
    else held.push(send)
  })
  return { backend, release: () => { open = true; for (const send of held.splice(0)) send() } }
}

t.test('many concurrent identical misses on one instance reach the backend once', async (t) => {
  const { backend, release } = await heldBackend(t)
  const gw = await cachedGateway(t, backend.url)
  const N = 100
  const answers = Array.from({ length: N }, async () => await gw.get('/c/popular'))
  t.ok(await until(() => gw.app.requestEnds.inFlight === N && backend.hits === 1, 30_000), 'all requests in flight, one at the backend')
  release()
  const results = await Promise.all(answers)
  t.equal(backend.hits, 1)
  t.ok(results.every((r) => r.status === 200 && r.body === '/c/popular #1'), 'every caller got the one response')
  const collapsed = results.filter((r) => r.headers['cache-status'] === 'gateway; fwd=miss; collapsed').length
  t.equal(collapsed, N - 1)
})

t.test('when the fetching client leaves, the waiters stop waiting and go to the backend themselves', async (t) => {
  const backend = await scriptedBackend(t)
  backend.behave((req, res, _body, n) => {
    // The first fetch is never answered: only its client leaving can settle it.
    if (n === 1) return
    res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`${req.url ?? ''} #${n}`)
  })
  // A service timeout far above the test's patience: a waiter released only by it would be seen.
  const gw = await cachedGateway(t, backend.url, {}, {}, { timeoutMs: 60_000 })
  const leader = httpRequest({ host: '127.0.0.1', port: gw.port, path: '/c/left', agent: false })
  leader.on('error', () => {})
  leader.end()
  t.ok(await until(() => backend.hits === 1, 10_000), 'the first request is at the backend')
  const follower = gw.get('/c/left', { timeoutMs: 20_000 })
  t.ok(await until(() => gw.app.requestEnds.inFlight === 2, 10_000), 'the second waits for the first')
  const started = performance.now()
  leader.destroy()
  const answer = await follower
  t.equal(answer.status, 200)
  t.equal(answer.body, '/c/left #2', 'it fetched for itself')
  t.ok(performance.now() - started < 10_000, 'released by the leader\'s end, not by the service timeout')
})

t.test('misses for different URLs are not held behind each other', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  await Promise.all(['/c/1', '/c/2', '/c/3'].map(async (p) => await gw.get(p)))
  t.equal(backend.hits, 3)
})

t.test('when the fetched response is not storable, the waiters go to the backend themselves', async (t) => {
  const backend = await scriptedBackend(t)
  let releaseFirst = (): void => {}
  backend.behave((_req, res, _body, n) => {
    const send = (): void => { res.writeHead(200, { 'cache-control': 'no-store' }).end(`#${n}`) }
    if (n === 1) releaseFirst = send
    else send()
  })
  const gw = await cachedGateway(t, backend.url)
  const answers = Array.from({ length: 5 }, async () => await gw.get('/c/private'))
  t.ok(await until(() => gw.app.requestEnds.inFlight === 5 && backend.hits === 1))
  releaseFirst()
  const results = await Promise.all(answers)
  t.ok(results.every((r) => r.status === 200))
  t.equal(backend.hits, 5)
})

t.test('two instances on Redis: concurrent identical misses reach the backend once', async (t) => {
  const { backend, release } = await heldBackend(t)
  const { uniquePrefix } = await import('../../support/app.js')
  const env = { STORAGE: 'redis', REDIS_KEY_PREFIX: uniquePrefix() }
  const a = await cachedGateway(t, backend.url, {}, env)
  const b = await cachedGateway(t, backend.url, {}, env)
  const N = 150
  const answers = [
    ...Array.from({ length: N }, async () => await http(a.port, '/c/shared')),
    ...Array.from({ length: N }, async () => await http(b.port, '/c/shared'))
  ]
  t.ok(await until(() => a.app.requestEnds.inFlight === N && b.app.requestEnds.inFlight === N && backend.hits === 1, 30_000), 'all requests in flight on both, one at the backend')
  release()
  const results = await Promise.all(answers)
  t.equal(backend.hits, 1)
  t.ok(results.every((r) => r.status === 200 && r.body === '/c/shared #1'), 'every caller on both instances got the one response')
})
