// The API-key hook (plugins/api-keys.ts) in a small app: one scope per service whose handler echoes
// the headers a backend would receive. The store is the real embedded one, wrapped so a test can
// count lookups and make it fail.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import errorHandler from '../../plugins/error-handler.js'
import metrics from '../../plugins/gateway-metrics.js'
import requestEnd from '../../plugins/request-end.js'
import apiKeys, { type ApiKeysOptions } from '../../plugins/api-keys.js'
import { upstreamHeaders } from '../../lib/http-headers.js'
import { createEmbeddedStore } from '../../plugins/store/index.js'
import type { KeyStore, Store } from '../../plugins/store/types.js'
import { generateApiKey } from '../../lib/api-key-format.js'
import { routesFile, testConfig } from '../support/app.js'
import { sleep } from '../support/basics.js'
import { makeKey } from './store/contract.js'
import configPlugin from '../../plugins/config.js'

type Teardownable = Parameters<typeof testConfig>[0]

interface Harness {
  app: FastifyInstance
  calls: { findByHash: number, touch: number }
  setBroken (b: boolean): void
  key (body?: Parameters<FastifyInstance['apiKeys']['create']>[0]): Promise<{ id: string, raw: string }>
}

const SERVICES = [
  { name: 'open', prefix: '/open', backends: [{ url: 'http://127.0.0.1:9' }] },
  { name: 'req', prefix: '/req', auth: 'required', backends: [{ url: 'http://127.0.0.1:9' }] },
  { name: 'none', prefix: '/none', auth: 'none', backends: [{ url: 'http://127.0.0.1:9' }] },
  { name: 'other', prefix: '/other', backends: [{ url: 'http://127.0.0.1:9' }] }
]

/** The real embedded store with counted, breakable key lookups. */
function breakable (real: Store) {
  const calls = { findByHash: 0, touch: 0 }
  let broken = false
  const keys: KeyStore = {
    create: (k) => real.keys.create(k),
    async findByHash (h) {
      calls.findByHash++
      if (broken) throw new Error('store down')
      return real.keys.findByHash(h)
    },
    get: (id) => real.keys.get(id),
    list: () => real.keys.list(),
    revoke: (id) => real.keys.revoke(id),
    delete: (id) => real.keys.delete(id),
    async touch (id, at) {
      calls.touch++
      if (broken) throw new Error('store down')
      return real.keys.touch(id, at)
    },
    onInvalidate: (l) => real.keys.onInvalidate(l)
  }
  const store: Store = { ...real, kind: real.kind, keys, services: real.services, buckets: real.buckets, failures: real.failures, ping: () => real.ping(), close: () => real.close() }
  return { store, calls, setBroken: (b: boolean) => { broken = b } }
}

async function harness (t: Teardownable, env: Record<string, string> = {}, opts: ApiKeysOptions = {}): Promise<Harness> {
  const config = testConfig(t, { ROUTES_FILE: routesFile(t, SERVICES), ...env })
  const { store, calls, setBroken } = breakable(createEmbeddedStore(config))
  const app = Fastify()
  await app.register(configPlugin, { config })
  await app.register(errorHandler)
  await app.register(requestEnd)
  await app.register(metrics)
  await app.register(fp(async (f) => {
    f.decorate('store', store)
    f.addHook('onClose', () => store.close())
  }, { name: 'store' }))
  await app.register(apiKeys, opts)
  for (const svc of config.services) {
    await app.register(async (scope) => {
      scope.addHook('onRequest', app.apiKeys.hookFor(svc))
      // What a backend would be sent: the proxy's header policy applied after the hook.
      scope.all('/*', async (request) => ({ headers: upstreamHeaders(request), consumer: request.consumer }))
    }, { prefix: svc.prefix })
  }
  t.teardown(() => app.close())
  await app.ready()
  return {
    app,
    calls,
    setBroken,
    async key (body = { name: 'k1' }) {
      const { record, rawKey } = await app.apiKeys.create(body)
      return { id: record.id, raw: rawKey }
    }
  }
}

t.test('a valid X-API-Key sets the consumer headers and never reaches the backend', async (t) => {
  const h = await harness(t)
  const k = await h.key({ name: 'client one', rate_limit: 100, burst: 5 })
  const res = await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.headers['x-consumer-id'], k.id)
  t.equal(body.headers['x-consumer-name'], 'client one')
  t.notOk('x-api-key' in body.headers)
  t.notOk(res.body.includes(k.raw))
  t.same(body.consumer, { id: k.id, name: 'client one', rateLimit: 100, burst: 5, services: null, quota: null, token: null })
})

t.test('a gateway key as Authorization: Bearer works and the Authorization header is removed', async (t) => {
  const h = await harness(t)
  const k = await h.key()
  for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
    const res = await h.app.inject({ url: '/open/x', headers: { authorization: `${scheme} ${k.raw}` } })
    t.equal(res.statusCode, 200, scheme)
    t.equal(res.json().headers['x-consumer-id'], k.id)
    t.notOk('authorization' in res.json().headers)
  }
})

t.test('a Bearer token that is not a gateway key passes untouched and the request is anonymous', async (t) => {
  const h = await harness(t, { API_KEY_REQUIRED: 'false' })
  const res = await h.app.inject({ url: '/open/x', headers: { authorization: 'Bearer eyJhbGciOi.backend.token' } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().headers.authorization, 'Bearer eyJhbGciOi.backend.token')
  t.notOk('x-consumer-id' in res.json().headers)
  t.equal(res.json().consumer, null)
})

t.test('client-sent X-Consumer-* headers are always removed', async (t) => {
  const h = await harness(t)
  const k = await h.key()
  const spoof = { 'X-Consumer-Id': 'admin', 'x-consumer-name': 'root' }
  const keyed = await h.app.inject({ url: '/open/x', headers: { ...spoof, 'x-api-key': k.raw } })
  t.equal(keyed.json().headers['x-consumer-id'], k.id)
  t.equal(keyed.json().headers['x-consumer-name'], 'k1')
  for (const url of ['/open/x', '/none/x']) {
    const anon = await h.app.inject({ url, headers: spoof })
    t.equal(anon.statusCode, 200)
    t.notOk('x-consumer-id' in anon.json().headers, url)
    t.notOk('x-consumer-name' in anon.json().headers, url)
  }
})

t.test('unknown, revoked, expired and malformed keys get the same 401 with WWW-Authenticate', async (t) => {
  const h = await harness(t)
  const revoked = await h.key({ name: 'revoked' })
  await h.app.apiKeys.revoke(revoked.id)
  const expiring = await h.key({ name: 'expiring', expires_at: new Date(Date.now() + 1000).toISOString() })
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': expiring.raw } })).statusCode, 200)
  await sleep(1100)
  const cases = {
    unknown: generateApiKey().raw,
    revoked: revoked.raw,
    expired: expiring.raw,
    malformed: 'gw_not-a-key',
    'bad checksum': revoked.raw.slice(0, -1) + (revoked.raw.endsWith('A') ? 'B' : 'A'),
    empty: ''
  }
  const bodies = new Set<string>()
  for (const [name, raw] of Object.entries(cases)) {
    const res = await h.app.inject({ url: '/open/x', headers: { 'x-api-key': raw } })
    t.equal(res.statusCode, 401, name)
    t.equal(res.headers['www-authenticate'], 'Key realm="gateway"', name)
    bodies.add(res.body)
  }
  t.equal(bodies.size, 1, 'identical bodies')
  t.match(JSON.parse([...bodies][0]), { status: 'error', error: 'Unauthorized' })
})

t.test('a missing key is 401 on an auth: required service and with API_KEY_REQUIRED=true', async (t) => {
  const h = await harness(t)
  t.equal((await h.app.inject({ url: '/open/x' })).statusCode, 200)
  const req = await h.app.inject({ url: '/req/x' })
  t.equal(req.statusCode, 401)
  t.equal(req.headers['www-authenticate'], 'Key realm="gateway"')
  t.match(req.json().message, /API key is required/)

  const strict = await harness(t, { API_KEY_REQUIRED: 'true' })
  t.equal((await strict.app.inject({ url: '/open/x' })).statusCode, 401)
  t.equal((await strict.app.inject({ url: '/none/x' })).statusCode, 200, 'auth: none still open')
  const k = await strict.key()
  t.equal((await strict.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })).statusCode, 200)
})

t.test('a key limited to some services gets 403 elsewhere', async (t) => {
  const h = await harness(t)
  const k = await h.key({ name: 'scoped', services: ['open'] })
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })).statusCode, 200)
  const res = await h.app.inject({ url: '/other/x', headers: { 'x-api-key': k.raw } })
  t.equal(res.statusCode, 403)
  t.match(res.json(), { status: 'error', error: 'Forbidden' })
})

t.test('auth: none skips key checks but still strips gateway credentials', async (t) => {
  const h = await harness(t)
  const res = await h.app.inject({ url: '/none/x', headers: { 'x-api-key': 'garbage', authorization: `Bearer ${generateApiKey().raw}` } })
  t.equal(res.statusCode, 200)
  t.notOk('x-api-key' in res.json().headers)
  t.notOk('authorization' in res.json().headers)
  t.equal(h.calls.findByHash, 0)
})

t.test('malformed keys are rejected without a store lookup', async (t) => {
  const h = await harness(t)
  const good = generateApiKey().raw
  for (const raw of ['gw_x', good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A'), 'a'.repeat(52), good + good]) {
    await h.app.inject({ url: '/open/x', headers: { 'x-api-key': raw } })
  }
  t.equal(h.calls.findByHash, 0)
})

t.test('a valid key is verified once, then served from the cache', async (t) => {
  const h = await harness(t)
  const k = await h.key()
  for (let i = 0; i < 20; i++) t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })).statusCode, 200)
  t.equal(h.calls.findByHash, 1)
})

t.test('concurrent requests with one uncached key share one lookup', async (t) => {
  const h = await harness(t)
  const k = await h.key()
  const all = await Promise.all(Array.from({ length: 20 }, () => h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })))
  t.same(all.map((r) => r.statusCode), Array(20).fill(200))
  t.equal(h.calls.findByHash, 1)
})

t.test('revoking or deleting a cached key takes effect on the next request', async (t) => {
  const h = await harness(t)
  const a = await h.key({ name: 'a' })
  const b = await h.key({ name: 'b' })
  for (const k of [a, b]) t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })).statusCode, 200)
  await h.app.apiKeys.revoke(a.id)
  await h.app.apiKeys.delete(b.id)
  for (const k of [a, b]) t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })).statusCode, 401)
})

t.test('an unknown key becomes valid as soon as it is created (no long negative caching)', async (t) => {
  const h = await harness(t, {}, { negativeTtlMs: 200 })
  const { raw, hash } = generateApiKey()
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': raw } })).statusCode, 401)
  // Written straight to the store, as another instance would: visible once the miss expires.
  await h.app.store.keys.create(makeKey({ id: 'other-instance', name: 'x', hash }))
  await sleep(250)
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': raw } })).statusCode, 200)
})

t.test('with the store down, a recently verified key passes and anything else gets 503 Retry-After: 1', async (t) => {
  const h = await harness(t, {}, { cacheTtlMs: 1500 })
  const recent = await h.key({ name: 'recent' })
  const other = await h.key({ name: 'other' })
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': recent.raw } })).statusCode, 200)
  h.setBroken(true)
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': recent.raw } })).statusCode, 200, 'verified within the TTL')
  const res = await h.app.inject({ url: '/open/x', headers: { 'x-api-key': other.raw } })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(res.json(), { status: 'error', error: 'Service Unavailable' })
  t.equal((await h.app.inject({ url: '/open/x' })).statusCode, 200, 'anonymous requests are unaffected')
  await sleep(1600)
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': recent.raw } })).statusCode, 503, 'never fails open past the TTL')
  h.setBroken(false)
  t.equal((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': recent.raw } })).statusCode, 200, 'back when the store is')
})

t.test('a busy key is refreshed in the background before its cache entry expires', async (t) => {
  const h = await harness(t, {}, { cacheTtlMs: 300 })
  const k = await h.key()
  const deadline = Date.now() + 1000
  let failures = 0
  while (Date.now() < deadline) {
    if ((await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })).statusCode !== 200) failures++
    await sleep(20)
  }
  t.equal(failures, 0)
  t.ok(h.calls.findByHash >= 2, `refreshed (${h.calls.findByHash} lookups)`)
})

t.test('last_used_at is written at most once a minute per key, and a failing write never fails the request', async (t) => {
  const h = await harness(t)
  const k = await h.key()
  for (let i = 0; i < 5; i++) await h.app.inject({ url: '/open/x', headers: { 'x-api-key': k.raw } })
  await sleep(20)
  t.equal(h.calls.touch, 1)
  const record = await h.app.apiKeys.get(k.id)
  t.ok(record?.last_used_at !== null, 'last_used_at recorded')

  const h2 = await harness(t)
  const k2 = await h2.key()
  h2.app.store.keys.touch = async () => { throw new Error('disk full') }
  t.equal((await h2.app.inject({ url: '/open/x', headers: { 'x-api-key': k2.raw } })).statusCode, 200)
})

t.test('a flood of unknown keys from one address gets 429; revoked, malformed and valid keys are never throttled', async (t) => {
  const h = await harness(t, {}, { maxInvalidPerMinute: 5 })
  const revoked = await h.key()
  await h.app.apiKeys.revoke(revoked.id)
  const from = (ip: string, key: string) => h.app.inject({ url: '/open/x', remoteAddress: ip, headers: { 'x-api-key': key } })
  for (let i = 0; i < 20; i++) t.equal((await from('10.0.0.1', revoked.raw)).statusCode, 401, 'a revoked key is known: 401, not counted')
  for (let i = 0; i < 20; i++) t.equal((await from('10.0.0.1', 'gw_malformed')).statusCode, 401, 'a malformed key: 401, not counted')
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await from('10.0.0.1', generateApiKey().raw)).statusCode)
  t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401])
  t.same(new Set(statuses.slice(5)), new Set([429]))
  const res = await from('10.0.0.1', generateApiKey().raw)
  t.ok(Number(res.headers['retry-after']) > 0)
  t.equal((await from('10.0.0.1', revoked.raw)).statusCode, 401, 'a revoked key from the throttled address: still 401')
  const k = await h.key()
  t.equal((await from('10.0.0.1', k.raw)).statusCode, 200, 'a valid key from the throttled address is served (it cannot be guessed)')
  t.equal((await from('10.0.0.2', generateApiKey().raw)).statusCode, 401, 'other addresses unaffected')
  t.equal((await from('10.0.0.2', k.raw)).statusCode, 200)
})
