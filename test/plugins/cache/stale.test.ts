// stale-if-error (docs/caching.md#stale-if-error): when the backend fails — a 5xx, a connection
// error, a timeout — or the breaker is open, a stale entry within its window answers instead.
// Entries get `max-age=1`; each test polls until its entry has gone stale (hits until then).
import t from 'tap'
import { metricValue, scrape } from '../../support/http.js'
import { cachedGateway, firstNonHit, scriptedBackend } from './gateway.js'

const NO_RETRY = { RETRY_MAX_RETRIES: '0' }

t.test('a backend 5xx is answered with the stale entry within staleIfErrorSeconds', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  t.equal((await gw.get('/c/s')).body, 'GET /c/s #1')
  backend.script(() => ({ status: 500, body: 'broken' }))
  const r = await firstNonHit(gw, '/c/s')
  t.equal(r.status, 200)
  t.equal(r.body, 'GET /c/s #1')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=500; detail=stale-if-error')
  t.ok(Number(r.headers.age) >= 1, 'the Age shows it is stale')
  t.equal(metricValue(await scrape(gw.port), 'gateway_cache_requests_total', { service: 'c', result: 'stale' }), 1)
})

t.test('a backend that is down (connection refused) is answered with the stale entry', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/down')
  await backend.close()
  const r = await firstNonHit(gw, '/c/down')
  t.equal(r.status, 200)
  t.equal(r.body, 'GET /c/down #1')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=502; detail=stale-if-error')
})

t.test('a backend that times out is answered with the stale entry', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY, { timeoutMs: 300 })
  await gw.get('/c/slow')
  backend.behave(() => { /* never answers */ })
  const r = await firstNonHit(gw, '/c/slow')
  t.equal(r.status, 200)
  t.equal(r.body, 'GET /c/slow #1')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=504; detail=stale-if-error')
})

t.test('an open breaker is answered with the stale entry, without contacting the backend', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ status: req.url === '/c/trip' ? 500 : 200, headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, { ...NO_RETRY, CB_MAX_FAILURES: '1', CB_RESET_TIMEOUT_SECONDS: '600' })
  await gw.get('/c/b')
  t.equal((await gw.get('/c/trip')).status, 500)
  const hits = backend.hits
  const r = await firstNonHit(gw, '/c/b')
  t.equal(r.status, 200)
  t.equal(r.body, 'GET /c/b #1')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=503; detail=stale-if-error')
  t.equal(backend.hits, hits, 'the open breaker kept the request from the backend')
  const fresh = await gw.get('/c/never-cached')
  t.equal(fresh.status, 503, 'with nothing stored, the open breaker answers as always')
})

t.test('the response\'s own stale-if-error opens the window when the service gives none', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1, stale-if-error=60' } }))
  const gw = await cachedGateway(t, backend.url, {}, NO_RETRY)
  await gw.get('/c/own')
  backend.script(() => ({ status: 503 }))
  const r = await firstNonHit(gw, '/c/own')
  t.equal(r.status, 200)
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=503; detail=stale-if-error')
})

t.test('without a window, or with must-revalidate, the error reaches the client', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ headers: { 'cache-control': req.url === '/c/mr' ? 'max-age=1, must-revalidate' : 'max-age=1' } }))
  const none = await cachedGateway(t, backend.url, {}, NO_RETRY)
  const strict = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await none.get('/c/plain')
  await strict.get('/c/mr')
  backend.script(() => ({ status: 500, body: 'broken' }))
  const a = await firstNonHit(none, '/c/plain')
  t.equal(a.status, 500)
  t.equal(a.body, 'broken')
  const b = await firstNonHit(strict, '/c/mr')
  t.equal(b.status, 500)
  t.equal(b.headers['cache-status'], 'gateway; fwd=miss; fwd-status=500', 'a must-revalidate entry is dropped when its freshness ends')
})

t.test('a stale entry is refreshed when the backend answers again', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/again')
  const r = await firstNonHit(gw, '/c/again')
  t.equal(r.body, 'GET /c/again #2')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=200')
  t.equal((await gw.get('/c/again')).headers['cache-status'], 'gateway; hit')
})
