// Revalidation (docs/caching.md#revalidation): a stale entry with a validator is kept past its
// freshness and confirmed with the backend by a conditional request; a 304 refreshes it and its
// stored body answers. Entries get `max-age=1`; each test polls until its entry has gone stale
// (hits until then).
import t from 'tap'
import { uniquePrefix } from '../../support/app.js'
import { metricValue, scrape } from '../../support/http.js'
import { cachedGateway, firstNonHit, scriptedBackend, type Answer } from './gateway.js'

const NO_RETRY = { RETRY_MAX_RETRIES: '0' }

t.test('a stale entry with an ETag is revalidated: the backend gets If-None-Match, its 304 refreshes the entry', async (t) => {
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-none-match'] === '"v1"'
    ? { status: 304, headers: { etag: '"v1"', 'cache-control': 'max-age=60', 'x-refreshed': 'yes' }, body: '' }
    : { headers: { etag: '"v1"', 'cache-control': 'max-age=1' }, body: 'the body, once' })
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  t.equal((await gw.get('/c/r')).body, 'the body, once')
  const r = await firstNonHit(gw, '/c/r')
  t.equal(r.status, 200, 'the client asked for the resource, not a 304')
  t.equal(r.body, 'the body, once', 'the stored body answers')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=304')
  t.equal(r.headers['x-refreshed'], 'yes', 'the 304\'s fields update the entry\'s')
  t.equal(r.headers['cache-control'], 'max-age=60')
  t.equal(r.headers['content-length'], String('the body, once'.length))
  t.equal(backend.requests[1].headers['if-none-match'], '"v1"', 'the backend was asked to confirm the entry')
  // Fresh again for 60 s: the next request is a hit, the backend is not asked.
  const next = await gw.get('/c/r')
  t.equal(next.headers['cache-status'], 'gateway; hit')
  t.equal(next.body, 'the body, once')
  t.equal(next.headers['x-refreshed'], 'yes')
  t.equal(backend.hits, 2)
  // A revalidation asked the backend: it counts as a miss, not as a hit.
  const m = await scrape(gw.port)
  t.equal(metricValue(m, 'gateway_cache_requests_total', { service: 'c', result: 'miss' }), 2)
})

t.test('Last-Modified alone is revalidated with If-Modified-Since', async (t) => {
  const stamp = new Date(Date.now() - 3_600_000).toUTCString()
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-modified-since'] === stamp
    ? { status: 304, headers: { 'last-modified': stamp, 'cache-control': 'max-age=60' }, body: '' }
    : { headers: { 'last-modified': stamp, 'cache-control': 'max-age=1' }, body: 'dated body' })
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/lm')
  const r = await firstNonHit(gw, '/c/lm')
  t.equal(r.status, 200)
  t.equal(r.body, 'dated body')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=304')
  t.equal(backend.requests[1].headers['if-modified-since'], stamp)
})

t.test('a changed resource (200 to the conditional request) replaces the entry', async (t) => {
  let version = 1
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-none-match'] === `"v${version}"`
    ? { status: 304, headers: { etag: `"v${version}"` }, body: '' }
    : { headers: { etag: `"v${version}"`, 'cache-control': 'max-age=1' }, body: `version ${version}` })
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/ch')
  version = 2
  const r = await firstNonHit(gw, '/c/ch')
  t.equal(backend.requests[1].headers['if-none-match'], '"v1"')
  t.equal(r.body, 'version 2')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=200')
  t.equal((await gw.get('/c/ch')).headers['cache-status'], 'gateway; hit')
})

t.test('a client\'s own condition is passed on unchanged, and the backend\'s 304 goes back to it', async (t) => {
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-none-match'] !== undefined
    ? { status: 304, headers: { etag: '"v1"' }, body: '' }
    : { headers: { etag: '"v1"', 'cache-control': 'max-age=1' }, body: 'body' })
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/own')
  const r = await firstNonHit(gw, '/c/own', { 'if-none-match': '"client-tag"' })
  t.equal(r.status, 304)
  t.equal(backend.requests[1].headers['if-none-match'], '"client-tag"', 'the gateway added no validator of its own')
})

t.test('a 304 whose validator does not match the entry is a failed answer: the stale entry answers within its window', async (t) => {
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-none-match'] !== undefined
    ? { status: 304, headers: { etag: '"something-else"' }, body: '' }
    : { headers: { etag: '"v1"', 'cache-control': 'max-age=1' }, body: 'body' })
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/odd')
  const r = await firstNonHit(gw, '/c/odd')
  t.equal(r.status, 200, 'a client that sent no condition never gets a 304')
  t.equal(r.body, 'body')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=502; detail=stale-if-error', 'not taken for a confirmation')
})

t.test('with no stale-if-error window, an entry with a validator is still kept past its freshness and revalidated', async (t) => {
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-none-match'] === '"k1"'
    ? { status: 304, headers: { etag: '"k1"', 'cache-control': 'max-age=1' }, body: '' }
    : { headers: { etag: '"k1"', 'cache-control': 'max-age=1' }, body: 'kept body' })
  const gw = await cachedGateway(t, backend.url, {}, NO_RETRY)
  await gw.get('/c/kept')
  const r = await firstNonHit(gw, '/c/kept')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=304')
  t.equal(r.body, 'kept body')
  // Kept for revalidation only: it does not stand in for an error (no stale-if-error window).
  backend.script(() => ({ status: 500, body: 'broken' }))
  const failed = await firstNonHit(gw, '/c/kept')
  t.equal(failed.status, 500)
  t.equal(failed.body, 'broken')
  t.equal(failed.headers['cache-status'], 'gateway; fwd=stale; fwd-status=500')
})

t.test('without a validator a stale entry is fetched again whole', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, NO_RETRY)
  await gw.get('/c/none')
  const r = await firstNonHit(gw, '/c/none')
  t.equal(backend.requests[1].headers['if-none-match'], undefined)
  t.equal(backend.requests[1].headers['if-modified-since'], undefined)
  t.equal(r.body, 'GET /c/none #2')
})

t.test('on Redis, an entry refreshed by one instance\'s revalidation is a hit on the other', async (t) => {
  const backend = await scriptedBackend(t, (req): Answer => req.headers['if-none-match'] === '"r1"'
    ? { status: 304, headers: { etag: '"r1"', 'cache-control': 'max-age=60' }, body: '' }
    : { headers: { etag: '"r1"', 'cache-control': 'max-age=1' }, body: 'shared body' })
  const env = { STORAGE: 'redis', REDIS_KEY_PREFIX: uniquePrefix(), ...NO_RETRY }
  const a = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, env)
  const b = await cachedGateway(t, backend.url, { staleIfErrorSeconds: 60 }, env)
  t.equal((await a.get('/c/fleet')).body, 'shared body')
  const r = await firstNonHit(a, '/c/fleet')
  t.equal(r.headers['cache-status'], 'gateway; fwd=stale; fwd-status=304')
  t.equal(r.body, 'shared body')
  const other = await b.get('/c/fleet')
  t.equal(other.headers['cache-status'], 'gateway; hit', 'the refreshed entry is the fleet\'s')
  t.equal(other.body, 'shared body')
  t.equal(backend.hits, 2)
})
