// The admin API-key endpoints (docs/admin-api.md#api-keys table) through the admin scope, with auth on.
import t from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { createHash } from 'node:crypto'
import { build } from '../../support/app.js'

type Teardownable = Parameters<typeof build>[0]
const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')

/** The real gateway (src/app.ts); these tests only talk to its admin scope. */
const adminApp = (t: Teardownable, env: Record<string, string> = {}): Promise<FastifyInstance> => build(t, env)

function admin (app: FastifyInstance, opts: InjectOptions) {
  return app.inject({ ...opts, headers: { authorization: AUTH, ...opts.headers } })
}

const create = (app: FastifyInstance, body: unknown) =>
  admin(app, { method: 'POST', url: '/admin/apikeys', payload: body as Record<string, unknown> })

t.test('POST /admin/apikeys creates a key: 201, the seed message, the raw key once, no-store', async (t) => {
  const app = await adminApp(t)
  const res = await create(app, { name: 'my-app', rate_limit: 100 })
  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.equal(body.status, 'success')
  t.equal(body.message, "API key created. Save the raw_key - it won't be shown again!")
  t.match(body.data.raw_key, /^gw_[A-Za-z0-9_-]{49}$/)
  t.same(Object.keys(body.data.api_key).sort(), ['active', 'burst', 'created_at', 'expires_at', 'id', 'last_used_at', 'name', 'quota', 'rate_limit', 'services'])
  t.match(body.data.api_key, { name: 'my-app', rate_limit: 100, burst: null, services: null, active: true, expires_at: null, last_used_at: null })
  t.ok(!Number.isNaN(Date.parse(body.data.api_key.created_at)))
})

t.test('list and get never show the hash or the raw key', async (t) => {
  const app = await adminApp(t)
  const created = (await create(app, { name: 'k1', services: ['user-service'], burst: 3, expires_at: '2999-01-01T00:00:00Z' })).json().data
  const hash = createHash('sha256').update(created.raw_key).digest('hex')
  const list = await admin(app, { url: '/admin/apikeys' })
  t.equal(list.statusCode, 200)
  t.equal(list.json().status, 'success')
  t.same(list.json().data, [created.api_key])
  const one = await admin(app, { url: `/admin/apikeys/${created.api_key.id}` })
  t.equal(one.statusCode, 200)
  t.same(one.json(), { status: 'success', data: created.api_key })
  t.equal(one.json().data.expires_at, '2999-01-01T00:00:00.000Z')
  for (const res of [list, one]) {
    t.notOk(res.body.includes(hash))
    t.notOk(res.body.includes(created.raw_key))
    t.notOk(res.body.includes(created.raw_key.slice(3, 20)))
    t.notMatch(res.body, /[0-9a-f]{32}/)
  }
})

t.test('revoke and delete: 200, then the key is inactive or gone; unknown ids are 404', async (t) => {
  const app = await adminApp(t)
  const { id } = (await create(app, { name: 'k1' })).json().data.api_key
  const revoked = await admin(app, { method: 'POST', url: `/admin/apikeys/${id}/revoke` })
  t.equal(revoked.statusCode, 200)
  t.match(revoked.json(), { status: 'success', message: /revoked/ })
  t.equal((await admin(app, { url: `/admin/apikeys/${id}` })).json().data.active, false)
  t.equal((await admin(app, { method: 'POST', url: `/admin/apikeys/${id}/revoke` })).statusCode, 200, 'revoking twice is fine')
  const deleted = await admin(app, { method: 'DELETE', url: `/admin/apikeys/${id}` })
  t.equal(deleted.statusCode, 200)
  t.match(deleted.json(), { status: 'success', message: /deleted/ })
  for (const [method, url] of [['GET', `/admin/apikeys/${id}`], ['POST', `/admin/apikeys/${id}/revoke`], ['DELETE', `/admin/apikeys/${id}`], ['GET', '/admin/apikeys/nope']] as const) {
    const res = await admin(app, { method, url })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.match(res.json(), { status: 'error', error: 'Not Found' })
  }
  t.same((await admin(app, { url: '/admin/apikeys' })).json().data, [])
})

t.test('an id outside the allowed pattern is a 400 naming "id"', async (t) => {
  const app = await adminApp(t)
  const res = await admin(app, { url: '/admin/apikeys/' + 'x'.repeat(65) })
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /^id: /)
})

t.test('invalid create bodies are 400 naming the field, and create nothing', async (t) => {
  const app = await adminApp(t)
  const cases: Array<[string, unknown, RegExp]> = [
    ['number as name', { name: 123 }, /^name: /],
    ['missing name', {}, /name: /],
    ['extra field', { name: 'k1', isAdmin: true }, /isAdmin/],
    ['mass assignment', { name: 'k1', id: 'fixed', hash: '00', created_at: 0, active: false }, /Unrecognized keys?/],
    ['string rate limit', { name: 'k1', rate_limit: '100' }, /^rate_limit: /],
    ['zero burst', { name: 'k1', burst: 0 }, /^burst: /],
    ['fractional rate limit', { name: 'k1', rate_limit: 1.5 }, /^rate_limit: /],
    ['unknown service', { name: 'k1', services: ['nope'] }, /^services\.0: /],
    ['services not a list', { name: 'k1', services: 'user-service' }, /^services: /],
    ['expiry in the past', { name: 'k1', expires_at: '2001-01-01T00:00:00Z' }, /^expires_at: must be in the future/],
    ['expiry not ISO', { name: 'k1', expires_at: 'tomorrow' }, /^expires_at: /],
    ['right-to-left override', { name: 'k\u202eey' }, /^name: /],
    ['NUL', { name: 'a\u0000b' }, /^name: /],
    ['CRLF', { name: 'a\r\nb' }, /^name: /],
    ['path', { name: '../x' }, /^name: /],
    ['Cyrillic lookalike', { name: '\u0430dmin' }, /^name: /],
    ['emoji', { name: 'key\u{1F600}' }, /^name: /],
    ['10,000 characters', { name: 'a'.repeat(10_000) }, /^name: /],
    ['array body', [{ name: 'k1' }], /^body: /],
    ['null body', null, /^body: /]
  ]
  for (const [label, body, message] of cases) {
    const res = await admin(app, { method: 'POST', url: '/admin/apikeys', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) })
    t.equal(res.statusCode, 400, label)
    t.match(res.json(), { status: 'error', error: 'Bad Request', message }, label)
  }
  t.same((await admin(app, { url: '/admin/apikeys' })).json().data, [])
})

t.test('prototype poisoning is a 400 and pollutes nothing', async (t) => {
  const app = await adminApp(t)
  for (const payload of ['{"name":"k1","__proto__":{"isAdmin":true}}', '{"name":"k1","constructor":{"prototype":{"isAdmin":true}}}']) {
    const res = await admin(app, { method: 'POST', url: '/admin/apikeys', headers: { 'content-type': 'application/json' }, payload })
    t.equal(res.statusCode, 400)
    t.equal(res.json().status, 'error')
  }
  t.equal(({} as Record<string, unknown>).isAdmin, undefined)
  t.same((await admin(app, { url: '/admin/apikeys' })).json().data, [])
})

t.test('bad JSON, empty bodies and wrong content types are 400/415 envelopes, never 500', async (t) => {
  const app = await adminApp(t)
  const cases: Array<[string, string | undefined, string, number[]]> = [
    ['truncated JSON', 'application/json', '{"name":', [400]],
    ['empty JSON body', 'application/json', '', [400]],
    ['text/plain', 'text/plain', '{"name":"k1"}', [400, 415]],
    ['tab in content type', 'application/json\tx', '{"name":"k1"}', [400, 415]],
    ['garbage after content type', 'application/json garbage', '{"name":"k1"}', [400, 415]],
    ['xml', 'application/xml', '<a/>', [415]],
    ['deep nesting', 'application/json', '['.repeat(30_000) + ']'.repeat(30_000), [400]]
  ]
  for (const [label, type, payload, statuses] of cases) {
    const res = await admin(app, { method: 'POST', url: '/admin/apikeys', headers: type === undefined ? {} : { 'content-type': type }, payload })
    t.ok(statuses.includes(res.statusCode), `${label}: ${res.statusCode}`)
    t.match(res.json(), { status: 'error' }, label)
    t.notMatch(res.body, /at .*\.js:\d+/, `${label}: no stack`)
  }
  t.same((await admin(app, { url: '/admin/apikeys' })).json().data, [])
})

t.test('admin bodies over 64 KiB are 413', async (t) => {
  const app = await adminApp(t)
  const fits = JSON.stringify({ name: 'k1' }) + ' '.repeat(64 * 1024 - 13)
  t.equal(fits.length, 64 * 1024)
  t.equal((await admin(app, { method: 'POST', url: '/admin/apikeys', headers: { 'content-type': 'application/json' }, payload: fits })).statusCode, 201)
  for (const size of [64 * 1024 + 1, 1024 * 1024]) {
    const res = await admin(app, { method: 'POST', url: '/admin/apikeys', headers: { 'content-type': 'application/json' }, payload: '{"name":"k2"}' + ' '.repeat(size - 13) })
    t.equal(res.statusCode, 413, `${size} bytes`)
    t.match(res.json(), { status: 'error', error: 'Payload Too Large' })
  }
  t.equal((await admin(app, { url: '/admin/apikeys' })).json().data.length, 1)
})

t.test('a create while the store is down is a 503 with Retry-After and shows no raw key', async (t) => {
  const app = await adminApp(t)
  app.store.keys.create = async () => { throw new Error('SQLITE_READONLY: attempt to write a readonly database') }
  const res = await create(app, { name: 'k1' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.notMatch(res.body, /gw_|SQLITE/)
  t.match(res.json(), { status: 'error', error: 'Service Unavailable' })
})

t.test('GET /admin/openapi.json documents every admin route from the zod schemas', async (t) => {
  const app = await adminApp(t)
  const res = await admin(app, { url: '/admin/openapi.json' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const doc = res.json()
  t.equal(doc.openapi, '3.1.0')
  const ops = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
    .flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`)).sort()
  t.same(ops, [
    'DELETE /admin/apikeys/{id}',
    'DELETE /admin/cache',
    'DELETE /admin/cache/{name}',
    'DELETE /admin/services/{name}',
    'GET /admin/apikeys',
    'GET /admin/apikeys/{id}',
    'GET /admin/apikeys/{id}/usage',
    'GET /admin/circuit-breakers',
    'GET /admin/openapi.json',
    'GET /admin/services',
    'GET /admin/services/{name}',
    'PATCH /admin/services/{name}',
    'POST /admin/apikeys',
    'POST /admin/apikeys/{id}/revoke',
    'POST /admin/circuit-breakers/reset',
    'POST /admin/circuit-breakers/{name}/reset',
    'PUT /admin/services/{name}'
  ])
  const createOp = doc.paths['/admin/apikeys'].post
  const body = createOp.requestBody.content['application/json'].schema
  t.equal(body.additionalProperties, false)
  t.same(body.required, ['name'])
  // Services change at run time (admin API), so names are checked at validation, not enumerated.
  t.equal(body.properties.services.anyOf[0].items.type, 'string')
  t.ok(createOp.responses['201'].content['application/json'].schema.properties.data)
  t.notOk('hash' in createOp.responses['201'].content['application/json'].schema.properties.data.properties.api_key.properties)
  t.same(doc.paths['/admin/apikeys/{id}'].get.parameters.map((p: { name: string }) => p.name), ['id'])
  t.same(doc.security, [{ basicAuth: [] }])
})

t.test('admin responses are not cached, and the admin scope does not leak its hooks', async (t) => {
  const app = await adminApp(t)
  const list = await admin(app, { url: '/admin/apikeys' })
  t.equal(list.headers['cache-control'], 'no-store')
  const denied = await app.inject({ url: '/admin/apikeys' })
  t.equal(denied.statusCode, 401)
  t.equal(denied.headers['cache-control'], 'no-store')
})
