// Authentication, scopes and rate limiting run before the cache (docs/caching.md): a hit still
// needs a credential and still takes a token. And the metrics each answer is counted in.
import t from 'tap'
import { ADMIN_PASSWORD } from '../../support/gateway-process.js'
import { createKey, metricValue, scrape } from '../../support/http.js'
import { cachedGateway, scriptedBackend } from './gateway.js'

t.test('a cached answer never reaches a caller without a valid key, nor one whose key may not call the service', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'public, max-age=60' } }))
  const gw = await cachedGateway(t, backend.url, {}, { ADMIN_PASSWORD }, { auth: 'required' }, [{ name: 'other', prefix: '/other', backends: [{ url: backend.url }] }])
  const key = await createKey(gw.port, { name: 'allowed', services: ['c'] })
  const other = await createKey(gw.port, { name: 'elsewhere', services: ['other'] })
  t.equal((await gw.get('/c/secret', { headers: { 'x-api-key': key.raw } })).status, 200)
  t.equal((await gw.get('/c/secret', { headers: { 'x-api-key': key.raw } })).headers['cache-status'], 'gateway; hit')
  const anonymous = await gw.get('/c/secret')
  t.equal(anonymous.status, 401)
  t.equal(anonymous.headers['cache-status'], undefined)
  t.equal((await gw.get('/c/secret', { headers: { 'x-api-key': other.raw } })).status, 403)
  t.equal(backend.hits, 1)
})

t.test('a hit takes a token: an empty bucket is 429 even for a cached URL', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url, {}, {}, { rateLimit: { rpm: 1, burst: 3 } })
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) {
    const r = await gw.get('/c/limited', { localAddress: '127.0.0.1' })
    statuses.push(r.status)
    if (r.status === 200) t.ok(r.headers['x-ratelimit-remaining'] !== undefined, 'a hit carries the rate-limit fields')
  }
  t.same(statuses, [200, 200, 200, 429])
  t.equal(backend.hits, 1)
})

t.test('gateway_cache_requests_total counts hit, miss and bypass per service; the bytes held are a gauge', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  const before = await scrape(gw.port)
  t.equal(metricValue(before, 'gateway_cache_bytes'), 0)
  await gw.get('/c/m')
  await gw.get('/c/m')
  await gw.get('/c/m')
  await gw.get('/c/m', { headers: { range: 'bytes=0-1' } })
  const m = await scrape(gw.port)
  t.equal(metricValue(m, 'gateway_cache_requests_total', { service: 'c', result: 'miss' }), 1)
  t.equal(metricValue(m, 'gateway_cache_requests_total', { service: 'c', result: 'hit' }), 2)
  t.equal(metricValue(m, 'gateway_cache_requests_total', { service: 'c', result: 'bypass' }), 1)
  t.equal(metricValue(m, 'gateway_cache_requests_total', { service: 'c', result: 'stale' }), 0)
  t.ok(metricValue(m, 'gateway_cache_bytes') > 'GET /c/m #1'.length)
})

t.test('a hit takes no concurrency slot and no breaker permit', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ status: req.url === '/c/fail' ? 500 : 200 }))
  let release = (): void => {}
  const gw = await cachedGateway(t, backend.url, {}, { RETRY_MAX_RETRIES: '0', CB_MAX_FAILURES: '1', CB_RESET_TIMEOUT_SECONDS: '600' }, { maxConcurrent: 1, queueTimeoutMs: 0 })
  await gw.get('/c/cached')
  backend.behave((req, res) => { if (req.url === '/c/slow') release = () => { res.writeHead(200).end('slow') } })
  const slow = gw.get('/c/slow')
  const { until } = await import('../../support/basics.js')
  t.ok(await until(() => backend.hits === 2), 'the one slot is held')
  t.equal((await gw.get('/c/other')).status, 503, 'a miss is shed')
  const hit = await gw.get('/c/cached')
  t.equal(hit.status, 200)
  t.equal(hit.headers['cache-status'], 'gateway; hit')
  release()
  t.equal((await slow).status, 200)

  backend.behave((_req, res) => { res.writeHead(500).end() })
  t.equal((await gw.get('/c/fail')).status, 500)
  t.equal((await gw.get('/c/uncached')).status, 503, 'the breaker is open')
  t.equal((await gw.get('/c/cached')).headers['cache-status'], 'gateway; hit', 'a fresh hit is served while it is open')
})
