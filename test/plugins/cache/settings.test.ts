// The per-service `cache` object (docs/configuration.md#response-cache): validated in the routes
// file and through /admin/services, documented in the OpenAPI document, applied live; and
// CACHE_MAX_BYTES.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { configProblems, listen, routesFile, testConfig } from '../../support/app.js'
import { http } from '../../support/http.js'
import { scriptedBackend } from './gateway.js'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')

async function admin (app: FastifyInstance, method: 'GET' | 'PUT' | 'PATCH', url: string, payload?: unknown) {
  return await app.inject({ method, url, headers: { authorization: AUTH }, ...(payload === undefined ? {} : { payload: payload as object }) })
}

t.test('a cache object added through /admin/services applies at once; bad settings are 400', async (t) => {
  const backend = await scriptedBackend(t)
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  const def = { prefix: '/api/items', backends: [{ url: backend.url }], rateLimit: false }
  t.equal((await admin(app, 'PUT', '/admin/services/items', def)).statusCode, 201)
  await http(port, '/api/items/1')
  t.equal((await http(port, '/api/items/1')).headers['cache-status'], undefined, 'no cache object: no cache')

  for (const bad of [{ ttlSeconds: -1 }, { maxEntryBytes: 0 }, { staleIfErrorSeconds: 1.5 }, { ttl: 5 }]) {
    const res = await admin(app, 'PATCH', '/admin/services/items', { cache: bad })
    t.equal(res.statusCode, 400, JSON.stringify(bad))
    t.equal(res.json().status, 'error')
  }
  const patched = await admin(app, 'PATCH', '/admin/services/items', { cache: { ttlSeconds: 60 } })
  t.equal(patched.statusCode, 200)
  t.same(patched.json().data.service.cache, { ttlSeconds: 60, maxEntryBytes: 1048576, staleIfErrorSeconds: 0 }, 'defaults filled in')
  await http(port, '/api/items/1')
  t.equal((await http(port, '/api/items/1')).headers['cache-status'], 'gateway; hit')

  const doc = (await admin(app, 'GET', '/admin/openapi.json')).json()
  t.match(JSON.stringify(doc), /staleIfErrorSeconds/, 'the cache object is in the OpenAPI document')
})

t.test('the routes file validates the cache object and names the field', async (t) => {
  const file = routesFile(t, [{ name: 'c', prefix: '/c', backends: [{ url: 'http://127.0.0.1:1' }], cache: { maxEntryBytes: 'big' } }])
  const problems = configProblems(() => testConfig(t, { ROUTES_FILE: file }))
  t.ok(problems.some((p) => p.includes('cache.maxEntryBytes')), problems.join('\n'))
})

t.test('CACHE_MAX_BYTES: default 64 MiB, a whole number of at least 1024', async (t) => {
  t.equal(testConfig(t).cacheMaxBytes, 64 * 1024 * 1024)
  t.equal(testConfig(t, { CACHE_MAX_BYTES: '2048' }).cacheMaxBytes, 2048)
  for (const bad of ['12', 'lots', '-1']) {
    t.ok(configProblems(() => testConfig(t, { CACHE_MAX_BYTES: bad })).some((p) => p.startsWith('CACHE_MAX_BYTES')), bad)
  }
})
