// Purging through the admin API (docs/caching.md#purging): DELETE /admin/cache and
// DELETE /admin/cache/{service}?prefix=/path, on the embedded store and on two instances sharing Redis.
import t from 'tap'
import { until } from '../../support/basics.js'
import { uniquePrefix } from '../../support/app.js'
import { ADMIN_PASSWORD } from '../../support/gateway-process.js'
import { admin, http } from '../../support/http.js'
import { cachedGateway, scriptedBackend } from './gateway.js'

const status = (r: { headers: Record<string, unknown> }) => r.headers['cache-status']

t.test('DELETE /admin/cache/{service}?prefix= drops that path and below; DELETE /admin/cache drops all', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url, {}, { ADMIN_PASSWORD })
  const paths = ['/c/a', '/c/a/1?x=1', '/c/ab', '/c/b']
  for (const p of paths) await gw.get(p)
  for (const p of paths) t.equal(status(await gw.get(p)), 'gateway; hit')

  const one = await admin(gw.port, 'DELETE', '/admin/cache/c?prefix=/c/a')
  t.equal(one.status, 200)
  t.same(one.json().data, { service: 'c', prefix: '/c/a', purged: 2 })
  t.equal(one.headers['cache-control'], 'no-store')
  t.equal(status(await gw.get('/c/a')), 'gateway; fwd=miss; fwd-status=200')
  t.equal(status(await gw.get('/c/a/1?x=1')), 'gateway; fwd=miss; fwd-status=200')
  t.equal(status(await gw.get('/c/ab')), 'gateway; hit', 'a prefix ends on a segment boundary')
  t.equal(status(await gw.get('/c/b')), 'gateway; hit')

  const all = await admin(gw.port, 'DELETE', '/admin/cache')
  t.equal(all.status, 200)
  t.equal(all.json().data.purged, 4)
  for (const p of paths) t.equal(status(await gw.get(p)), 'gateway; fwd=miss; fwd-status=200')
})

t.test('purge input is validated: unknown service 404, a bad prefix 400, no credentials 401', async (t) => {
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url, {}, { ADMIN_PASSWORD })
  const unknown = await admin(gw.port, 'DELETE', '/admin/cache/nope')
  t.equal(unknown.status, 404)
  t.equal(unknown.json().status, 'error')
  t.equal((await admin(gw.port, 'DELETE', '/admin/cache/c?prefix=relative')).status, 400)
  t.equal((await admin(gw.port, 'DELETE', '/admin/cache/c?other=1')).status, 400)
  t.equal((await http(gw.port, '/admin/cache', { method: 'DELETE' })).status, 401)
  const doc = (await admin(gw.port, 'GET', '/admin/openapi.json')).json()
  t.ok(doc.paths['/admin/cache']?.delete, 'in the OpenAPI document')
  t.ok(doc.paths['/admin/cache/{name}']?.delete)
})

t.test('on Redis, a purge made through one instance is seen by both within 1 s', async (t) => {
  const backend = await scriptedBackend(t)
  const env = { STORAGE: 'redis', REDIS_KEY_PREFIX: uniquePrefix(), ADMIN_PASSWORD }
  const a = await cachedGateway(t, backend.url, {}, env)
  const b = await cachedGateway(t, backend.url, {}, env)
  await a.get('/c/shared')
  t.equal(status(await b.get('/c/shared')), 'gateway; hit', 'the entry is shared')
  t.equal(backend.hits, 1)

  const purged = await admin(b.port, 'DELETE', '/admin/cache/c')
  t.equal(purged.status, 200)
  t.equal(purged.json().data.purged, 1)
  // The shared entries are gone before the purge answers: the other instance's next request misses.
  t.equal(status(await a.get('/c/shared')), 'gateway; fwd=miss; fwd-status=200', 'instance a no longer serves it')
  t.equal(status(await b.get('/c/shared')), 'gateway; hit', 'refilled by a, shared again')
  await admin(a.port, 'DELETE', '/admin/cache')
  t.equal(status(await b.get('/c/shared')), 'gateway; fwd=miss; fwd-status=200')

  // An update through one instance invalidates the URL for the other.
  t.equal(status(await a.get('/c/shared')), 'gateway; hit')
  t.equal((await a.get('/c/shared', { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } })).status, 200)
  t.equal(status(await b.get('/c/shared')), 'gateway; fwd=miss; fwd-status=200')
})

t.test('a response being fetched while its URL is purged is relayed but not stored', async (t) => {
  const backend = await scriptedBackend(t)
  let release = (): void => {}
  backend.behave((_req, res, _body, n) => {
    const send = (): void => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`#${n}`) }
    if (n === 1) release = send
    else send()
  })
  const gw = await cachedGateway(t, backend.url, {}, { ADMIN_PASSWORD })
  const pending = gw.get('/c/racing')
  t.ok(await until(() => backend.hits === 1))
  t.equal((await admin(gw.port, 'DELETE', '/admin/cache/c')).status, 200)
  release()
  t.equal((await pending).body, '#1')
  t.equal((await gw.get('/c/racing')).body, '#2', 'the purged fetch stored nothing')
})
