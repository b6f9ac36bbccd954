// The response cache's storage rules and answers (docs/caching.md#what-is-stored), over real
// sockets: a real backend and the gateway listening on port 0, embedded store.
import t from 'tap'
import { cachedGateway, scriptedBackend } from './gateway.js'

t.test('a fresh response is stored and the next GET is a hit with Age and Cache-Status', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  const first = await gw.get('/c/a')
  t.equal(first.status, 200)
  t.equal(first.body, 'GET /c/a #1')
  t.equal(first.headers['cache-status'], 'gateway; fwd=miss; fwd-status=200')
  const second = await gw.get('/c/a')
  t.equal(second.status, 200)
  t.equal(second.body, 'GET /c/a #1')
  t.equal(second.headers['cache-status'], 'gateway; hit')
  t.match(second.headers.age, /^\d+$/)
  t.equal(second.headers['content-type'], 'text/plain')
  t.equal(second.headers['content-length'], String('GET /c/a #1'.length))
  t.ok(second.headers['x-request-id'], 'the gateway\'s own fields are added to a hit')
  t.not(second.headers['x-request-id'], first.headers['x-request-id'])
  t.equal(backend.hits, 1)
})

t.test('Age counts the upstream Age plus the time the entry has been held', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { age: '30', 'cache-control': 'max-age=60' } }))
  const gw = await cachedGateway(t, backend.url)
  await gw.get('/c/aged')
  const hit = await gw.get('/c/aged')
  t.equal(hit.headers['cache-status'], 'gateway; hit')
  t.ok(Number(hit.headers.age) >= 30, `age ${String(hit.headers.age)} includes the upstream 30 s`)
})

t.test('an entry whose freshness ran out is fetched again', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { 'cache-control': 'max-age=1' } }))
  const gw = await cachedGateway(t, backend.url)
  t.equal((await gw.get('/c/short')).body, 'GET /c/short #1')
  t.equal((await gw.get('/c/short')).headers['cache-status'], 'gateway; hit')
  // max-age=1 and an upstream Age of 1 makes it stale at once: no waiting for the clock.
  backend.script(() => ({ headers: { 'cache-control': 'max-age=1', age: '1' } }))
  t.equal((await gw.get('/c/stale-on-arrival')).body, 'GET /c/stale-on-arrival #2')
  t.equal((await gw.get('/c/stale-on-arrival')).body, 'GET /c/stale-on-arrival #3', 'a response stale on arrival is not stored')
})

const NOT_STORED: Array<[string, Record<string, string | string[]>, number?]> = [
  ['no-store', { 'cache-control': 'no-store, max-age=60' }],
  ['private', { 'cache-control': 'private, max-age=60' }],
  ['no-cache', { 'cache-control': 'no-cache, max-age=60' }],
  ['max-age=0', { 'cache-control': 'max-age=0' }],
  ['no freshness at all (and ttlSeconds 0)', { 'cache-control': '' }],
  ['Last-Modified alone (no heuristic freshness)', { 'cache-control': '', 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' }],
  ['an Expires in the past', { 'cache-control': '', expires: 'Mon, 01 Jan 2024 00:00:00 GMT' }],
  ['Set-Cookie', { 'set-cookie': 'sid=1' }],
  ['Set-Cookie even with public', { 'cache-control': 'public, max-age=60', 'set-cookie': 'sid=1' }],
  ['Vary: *', { vary: '*' }],
  ['Vary naming *', { vary: 'Accept, *' }],
  ['proxy-revalidate', { 'cache-control': 'max-age=60, proxy-revalidate' }],
  ['status 500', {}, 500],
  ['status 302', {}, 302],
  ['status 201', {}, 201],
  ['status 206', {}, 206]
]

for (const [name, headers, status] of NOT_STORED) {
  t.test(`not stored: ${name}`, async (t) => {
    const backend = await scriptedBackend(t, () => ({ status, headers }))
    const gw = await cachedGateway(t, backend.url, {}, { RETRY_MAX_RETRIES: '0' })
    const first = await gw.get('/c/x')
    t.equal(first.status, status ?? 200)
    await gw.get('/c/x')
    t.equal(backend.hits, 2, 'both requests reached the backend')
  })
}

const STORED: Array<[string, Record<string, string>, number?]> = [
  ['s-maxage', { 'cache-control': 's-maxage=60' }],
  ['s-maxage wins over max-age=0', { 'cache-control': 'max-age=0, s-maxage=60' }],
  ['an Expires in the future', { 'cache-control': '', expires: new Date(Date.now() + 600_000).toUTCString() }],
  ['public with max-age', { 'cache-control': 'public, max-age=60' }],
  ['must-revalidate while fresh', { 'cache-control': 'max-age=60, must-revalidate' }],
  ['status 404', {}, 404],
  ['status 301', { location: '/elsewhere' }, 301],
  ['status 410', {}, 410],
  ['status 204', {}, 204]
]

for (const [name, headers, status] of STORED) {
  t.test(`stored: ${name}`, async (t) => {
    const backend = await scriptedBackend(t, () => ({ status, headers }))
    const gw = await cachedGateway(t, backend.url)
    t.equal((await gw.get('/c/x')).status, status ?? 200)
    const second = await gw.get('/c/x')
    t.equal(second.status, status ?? 200)
    t.equal(second.headers['cache-status'], 'gateway; hit')
    t.equal(backend.hits, 1)
  })
}

t.test('ttlSeconds gives freshness to a response that states none, not to one that refuses it', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ headers: { 'cache-control': req.url === '/c/refuses' ? 'max-age=0' : '' } }))
  const gw = await cachedGateway(t, backend.url, { ttlSeconds: 30 })
  await gw.get('/c/plain')
  t.equal((await gw.get('/c/plain')).headers['cache-status'], 'gateway; hit')
  await gw.get('/c/refuses')
  t.equal((await gw.get('/c/refuses')).headers['cache-status'], 'gateway; fwd=miss; fwd-status=200')
  t.equal(backend.hits, 3)
})

t.test('a request with Authorization is stored only when the response says public, s-maxage or must-revalidate', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ headers: { 'cache-control': new URL(req.url ?? '', 'http://x').searchParams.get('cc') ?? '' } }))
  const gw = await cachedGateway(t, backend.url)
  const auth = { authorization: 'Basic dXNlcjpwYXNz' }
  for (const [cc, stored] of [['max-age=60', false], ['public, max-age=60', true], ['s-maxage=60', true], ['max-age=60, must-revalidate', true]] as const) {
    const path = `/c/auth?cc=${encodeURIComponent(cc)}`
    const before = backend.hits
    await gw.get(path, { headers: auth })
    await gw.get(path, { headers: auth })
    t.equal(backend.hits - before, stored ? 1 : 2, `${cc}: ${stored ? 'stored' : 'not stored'}`)
  }
})

t.test('the gateway\'s own key (X-API-Key or Bearer gw_) does not count as Authorization', async (t) => {
  const backend = await scriptedBackend(t)
  const { ADMIN_PASSWORD } = await import('../../support/gateway-process.js')
  const gw = await cachedGateway(t, backend.url, {}, { ADMIN_PASSWORD })
  const { createKey } = await import('../../support/http.js')
  const key = await createKey(gw.port, { name: 'cache-test' })
  await gw.get('/c/keyed', { headers: { authorization: `Bearer ${key.raw}` } })
  const hit = await gw.get('/c/keyed', { headers: { 'x-api-key': key.raw } })
  t.equal(hit.headers['cache-status'], 'gateway; hit')
  t.equal(backend.hits, 1)
})

t.test('Vary: each variant of the named request fields is its own entry', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ headers: { vary: 'Accept-Language' }, body: `lang=${String(req.headers['accept-language'])}` }))
  const gw = await cachedGateway(t, backend.url)
  t.equal((await gw.get('/c/v', { headers: { 'accept-language': 'en' } })).body, 'lang=en')
  t.equal((await gw.get('/c/v', { headers: { 'accept-language': 'fr' } })).body, 'lang=fr')
  const en = await gw.get('/c/v', { headers: { 'accept-language': 'en' } })
  t.equal(en.body, 'lang=en')
  t.equal(en.headers['cache-status'], 'gateway; hit')
  const fr = await gw.get('/c/v', { headers: { 'accept-language': 'fr' } })
  t.equal(fr.body, 'lang=fr')
  t.equal(fr.headers['cache-status'], 'gateway; hit')
  t.equal(backend.hits, 2)
})

t.test('the key ignores the client\'s Host and gateway key parameters, and keeps the rest of the query', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  await gw.get('/c/q?a=1', { headers: { host: 'one.example' } })
  t.equal((await gw.get('/c/q?a=1', { headers: { host: 'two.example' } })).headers['cache-status'], 'gateway; hit')
  const key = `gw_${'A'.repeat(49)}`
  t.equal((await gw.get(`/c/q?a=1&api_key=${key}`)).headers['cache-status'], 'gateway; hit')
  t.equal((await gw.get('/c/q?a=2')).headers['cache-status'], 'gateway; fwd=miss; fwd-status=200')
  t.equal(backend.hits, 2)
})

t.test('a body over maxEntryBytes is relayed whole and not stored', async (t) => {
  const big = Buffer.alloc(300_000, 120)
  const backend = await scriptedBackend(t, () => ({ body: big }))
  const gw = await cachedGateway(t, backend.url, { maxEntryBytes: 100_000 })
  const first = await gw.get('/c/big')
  t.equal(first.body.length, big.length)
  const second = await gw.get('/c/big')
  t.equal(second.body.length, big.length)
  t.equal(backend.hits, 2)
})

t.test('a chunked body over maxEntryBytes (no Content-Length) is relayed whole and not stored', async (t) => {
  const backend = await scriptedBackend(t)
  backend.behave((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' })
    for (let i = 0; i < 20; i++) res.write(Buffer.alloc(10_000, 97))
    res.end()
  })
  const gw = await cachedGateway(t, backend.url, { maxEntryBytes: 50_000 })
  t.equal((await gw.get('/c/chunked')).body.length, 200_000)
  t.equal((await gw.get('/c/chunked')).body.length, 200_000)
  t.equal(backend.hits, 2)
})

t.test('a body within maxEntryBytes is stored byte for byte', async (t) => {
  const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251))
  const backend = await scriptedBackend(t, () => ({ body, headers: { 'content-type': 'application/octet-stream' } }))
  const gw = await cachedGateway(t, backend.url)
  const { request } = await import('node:http')
  const fetchBytes = async (): Promise<Buffer> => await new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port: gw.port, path: '/c/bytes', agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve(Buffer.concat(chunks)))
    }).on('error', reject).end()
  })
  t.ok((await fetchBytes()).equals(body))
  t.ok((await fetchBytes()).equals(body))
  t.equal(backend.hits, 1)
})

t.test('a conditional request against a fresh entry gets 304', async (t) => {
  const backend = await scriptedBackend(t, () => ({ headers: { etag: '"v1"', 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' } }))
  const gw = await cachedGateway(t, backend.url)
  await gw.get('/c/cond')
  const inm = await gw.get('/c/cond', { headers: { 'if-none-match': 'W/"v0", "v1"' } })
  t.equal(inm.status, 304)
  t.equal(inm.body, '')
  t.equal(inm.headers.etag, '"v1"')
  t.equal(inm.headers['cache-status'], 'gateway; hit')
  t.ok(inm.headers.age)
  t.equal((await gw.get('/c/cond', { headers: { 'if-none-match': '"v2"' } })).status, 200)
  t.equal((await gw.get('/c/cond', { headers: { 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 GMT' } })).status, 304)
  t.equal((await gw.get('/c/cond', { headers: { 'if-modified-since': 'Sun, 31 Dec 2023 00:00:00 GMT' } })).status, 200)
  t.equal(backend.hits, 1)
})

t.test('a HEAD is answered from the GET\'s entry, and a HEAD miss stores nothing', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  const headMiss = await gw.get('/c/h', { method: 'HEAD' })
  t.equal(headMiss.status, 200)
  t.equal(headMiss.headers['cache-status'], 'gateway; fwd=miss; fwd-status=200')
  const get = await gw.get('/c/h')
  t.equal(get.body, 'GET /c/h #2', 'the HEAD stored no empty body for the GET')
  const head = await gw.get('/c/h', { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body, '')
  t.equal(head.headers['cache-status'], 'gateway; hit')
  t.equal(head.headers['content-length'], String('GET /c/h #2'.length))
  t.equal(backend.hits, 2)
})

t.test('a successful POST, PUT, PATCH or DELETE invalidates its URL; a failed one does not', async (t) => {
  const backend = await scriptedBackend(t, (req) => ({ status: req.method !== 'GET' && req.url?.includes('fail') === true ? 500 : 200 }))
  const gw = await cachedGateway(t, backend.url, {}, { RETRY_MAX_RETRIES: '0' })
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    await gw.get('/c/item')
    t.equal((await gw.get('/c/item')).headers['cache-status'], 'gateway; hit', `${method}: cached before`)
    const body = method === 'DELETE' ? {} : { body: '{}', headers: { 'content-type': 'application/json' } }
    t.equal((await gw.get('/c/item', { method, ...body })).status, 200)
    t.equal((await gw.get('/c/item')).headers['cache-status'], 'gateway; fwd=miss; fwd-status=200', `${method}: invalidated`)
  }
  await gw.get('/c/item?fail')
  await gw.get('/c/item?fail', { method: 'POST', body: '{}' })
  t.equal((await gw.get('/c/item?fail')).headers['cache-status'], 'gateway; hit', 'a 500 invalidates nothing')
})

t.test('Range requests bypass the cache', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  await gw.get('/c/r')
  const ranged = await gw.get('/c/r', { headers: { range: 'bytes=0-1' } })
  t.equal(ranged.headers['cache-status'], 'gateway; fwd=bypass')
  t.equal(backend.hits, 2)
})

t.test('a request Cache-Control: no-cache goes to the backend and refreshes the entry', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url)
  await gw.get('/c/nc')
  const forced = await gw.get('/c/nc', { headers: { 'cache-control': 'no-cache' } })
  t.equal(forced.body, 'GET /c/nc #2')
  t.equal(forced.headers['cache-status'], 'gateway; fwd=stale; fwd-status=200')
  t.equal((await gw.get('/c/nc')).body, 'GET /c/nc #2')
})

t.test('a service without a cache object caches nothing and says nothing', async (t) => {
  const backend = await scriptedBackend(t)
  const { listen, routesFile } = await import('../../support/app.js')
  const { http } = await import('../../support/http.js')
  const ROUTES_FILE = routesFile(t, [{ name: 'plain', prefix: '/p', backends: [{ url: backend.url }] }])
  const { app } = await listen(t, { ROUTES_FILE })
  const port = (app.server.address() as { port: number }).port
  await http(port, '/p/x')
  const second = await http(port, '/p/x')
  t.equal(second.headers['cache-status'], undefined)
  t.equal(backend.hits, 2)
})
