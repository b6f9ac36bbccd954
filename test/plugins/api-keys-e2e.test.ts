// API keys end to end through the real app (src/app.ts): admin API → proxy → a real backend.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { connect } from 'node:net'
import { startBackend, type Backend } from '../support/backends.js'
import { rawCommand, startRedis } from '../support/redis-server.js'
import { REDIS_URL, build as buildApp, cleanRedis, uniquePrefix } from '../support/app.js'
import { sleep, tempDir, until } from '../support/basics.js'
import { http, nextIp } from '../support/http.js'
import { generateApiKey } from '../../lib/api-key-format.js'

const AUTH = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }
type Teardownable = Parameters<typeof buildApp>[0]

/** Rate limits out of the way: these tests are about keys. */
const build = (t: Teardownable, env: Record<string, string>) => buildApp(t, { RATE_LIMIT_BURST: '10000', RATE_LIMIT_RPM: '600000', ...env })

async function backend (t: Teardownable): Promise<Backend> {
  const b = await startBackend()
  t.teardown(() => b.close())
  return b
}

async function createKey (app: FastifyInstance, body: Record<string, unknown> = { name: 'e2e' }): Promise<{ id: string, raw: string }> {
  const res = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: AUTH, payload: body })
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`)
  const { api_key: record, raw_key: raw } = res.json().data
  return { id: record.id, raw }
}

const call = (app: FastifyInstance, headers: Record<string, string> = {}) => app.inject({ url: '/api/users/me', headers })

t.test('the backend sees X-Consumer-Id/Name and never the key, sent either way', async (t) => {
  const b = await backend(t)
  const app = await build(t, { USER_SERVICE_URL: b.url })
  const k = await createKey(app, { name: 'mobile app' })
  const variants: Array<Record<string, string>> = [{ 'x-api-key': k.raw }, { authorization: `Bearer ${k.raw}` }]
  for (const headers of variants) {
    const res = await call(app, { ...headers, 'x-consumer-id': 'admin', 'X-Consumer-Name': 'root' })
    t.equal(res.statusCode, 200)
    const seen = b.requests.at(-1)!
    t.equal(seen.headers['x-consumer-id'], k.id)
    t.equal(seen.headers['x-consumer-name'], 'mobile app')
    t.notOk('x-api-key' in seen.headers)
    t.notOk('authorization' in seen.headers)
    t.notOk(seen.rawHeaders.join('\n').includes(k.raw), 'key absent from the raw header lines')
    t.notOk(seen.rawHeaders.some((h) => h === 'admin' || h === 'root'), 'spoofed values absent')
  }
})

t.test('duplicate spoofed X-Consumer-Id lines and a Connection header naming it leave only the gateway value', async (t) => {
  const b = await backend(t)
  const app = await build(t, { USER_SERVICE_URL: b.url })
  const k = await createKey(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  const status = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (c) => { data += c.toString() })
    socket.on('end', () => resolve(data.split('\r\n')[0]))
    socket.on('error', reject)
    socket.write(`GET /api/users/me HTTP/1.1\r\nHost: gw\r\nX-API-Key: ${k.raw}\r\nX-Consumer-Id: admin\r\n` +
      'x-consumer-id: root\r\nX-Consumer-Name: root\r\nConnection: close, X-Consumer-Id, X-Consumer-Name\r\n\r\n')
  })
  t.equal(status, 'HTTP/1.1 200 OK')
  const seen = b.requests[0]
  t.equal(seen.headers['x-consumer-id'], k.id)
  t.equal(seen.headers['x-consumer-name'], 'e2e')
  t.equal(seen.rawHeaders.filter((h) => h.toLowerCase() === 'x-consumer-id').length, 1)
})

t.test('a backend Bearer token passes through and the request stays anonymous', async (t) => {
  const b = await backend(t)
  const app = await build(t, { USER_SERVICE_URL: b.url })
  t.equal((await call(app, { authorization: 'Bearer backend-token', 'x-consumer-id': 'x' })).statusCode, 200)
  t.equal(b.requests[0].headers.authorization, 'Bearer backend-token')
  t.notOk('x-consumer-id' in b.requests[0].headers)
})

t.test('bad keys never reach the backend; revocation is honoured on the next request', async (t) => {
  const b = await backend(t)
  const app = await build(t, { USER_SERVICE_URL: b.url })
  const k = await createKey(app)
  t.equal((await call(app, { 'x-api-key': k.raw })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: `/admin/apikeys/${k.id}/revoke`, headers: AUTH })).statusCode, 200)
  const res = await call(app, { 'x-api-key': k.raw })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Key realm="gateway"')
  t.equal((await call(app, { 'x-api-key': 'gw_garbage' })).statusCode, 401)
  t.equal(b.hits, 1)
})

t.test('API_KEY_REQUIRED=true rejects anonymous proxied requests with 401', async (t) => {
  const b = await backend(t)
  const app = await build(t, { USER_SERVICE_URL: b.url, API_KEY_REQUIRED: 'true' })
  t.equal((await call(app)).statusCode, 401)
  const k = await createKey(app)
  t.equal((await call(app, { 'x-api-key': k.raw })).statusCode, 200)
  t.equal(b.hits, 1)
})

t.test('Expect: 100-continue without a key gets the final 401 and no interim 100 (BI-21a)', async (t) => {
  const b = await backend(t)
  const app = await build(t, { USER_SERVICE_URL: b.url, API_KEY_REQUIRED: 'true' })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (c) => { data += c.toString() })
    socket.on('close', () => resolve(data))
    socket.on('error', reject)
    socket.write('POST /api/users/echo HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n')
    // The body is never sent: the server must answer (and close) on its own.
    setTimeout(() => socket.end(), 3000).unref()
  })
  t.match(reply, /^HTTP\/1\.1 401 /)
  t.notMatch(reply, /100 Continue/)
  t.match(reply, /www-authenticate: Key realm="gateway"/i)
  t.equal(b.hits, 0)
})

t.test('keys survive a restart of the embedded store', async (t) => {
  const b = await backend(t)
  const dataDir = tempDir(t)
  const first = await build(t, { USER_SERVICE_URL: b.url, DATA_DIR: dataDir })
  const k = await createKey(first)
  const revoked = await createKey(first, { name: 'revoked' })
  await first.inject({ method: 'POST', url: `/admin/apikeys/${revoked.id}/revoke`, headers: AUTH })
  await first.close()
  const second = await build(t, { USER_SERVICE_URL: b.url, DATA_DIR: dataDir })
  t.equal((await call(second, { 'x-api-key': k.raw })).statusCode, 200)
  t.equal((await call(second, { 'x-api-key': revoked.raw })).statusCode, 401)
  t.equal((await second.inject({ url: '/admin/apikeys', headers: AUTH })).json().data.length, 2)
})

t.test('two gateways on one Redis: a key made on one works on the other at once; revocation reaches it within 1 s', async (t) => {
  const b = await backend(t)
  const prefix = uniquePrefix()
  t.teardown(() => cleanRedis(prefix))
  const env = { USER_SERVICE_URL: b.url, STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: prefix }
  const g1 = await build(t, env)
  const g2 = await build(t, env)
  const k = await createKey(g1)
  t.equal((await call(g2, { 'x-api-key': k.raw })).statusCode, 200, 'created on g1, used on g2 in the next request')
  for (let i = 0; i < 10; i++) t.equal((await call(g2, { 'x-api-key': k.raw })).statusCode, 200)

  const revokedAt = Date.now()
  t.equal((await g1.inject({ method: 'POST', url: `/admin/apikeys/${k.id}/revoke`, headers: AUTH })).statusCode, 200)
  let seenAfter = -1
  while (Date.now() - revokedAt < 5000) {
    if ((await call(g2, { 'x-api-key': k.raw })).statusCode === 401) {
      seenAfter = Date.now() - revokedAt
      break
    }
    await sleep(20)
  }
  t.ok(seenAfter >= 0, `revocation seen on g2 after ${seenAfter} ms`)
  t.comment(`revocation reached the second instance after ${seenAfter} ms`)
  // Once seen, never 200 again.
  for (let i = 0; i < 5; i++) t.equal((await call(g2, { 'x-api-key': k.raw })).statusCode, 401)

  const d = await createKey(g2, { name: 'deleted' })
  t.equal((await call(g1, { 'x-api-key': d.raw })).statusCode, 200)
  t.equal((await g2.inject({ method: 'DELETE', url: `/admin/apikeys/${d.id}`, headers: AUTH })).statusCode, 200)
  let deleted = false
  for (let waited = 0; waited < 5000 && !deleted; waited += 20) {
    deleted = (await call(g1, { 'x-api-key': d.raw })).statusCode === 401
    if (!deleted) await sleep(20)
  }
  t.ok(deleted, 'deletion reaches the other instance')
})

t.test('with Redis down, an unverified key gets 503 and anonymous traffic still flows', async (t) => {
  const b = await backend(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await build(t, { USER_SERVICE_URL: b.url, STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() })
  const k = await createKey(app)
  const other = await createKey(app, { name: 'other' })
  t.equal((await call(app, { 'x-api-key': k.raw })).statusCode, 200)
  await redis.kill('SIGKILL')
  t.equal((await call(app, { 'x-api-key': k.raw })).statusCode, 200, 'verified seconds ago: honoured')
  const res = await call(app, { 'x-api-key': other.raw })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.notMatch(res.body, /redis|ECONN|127\.0\.0\.1/i)
  t.equal((await call(app)).statusCode, 200, 'anonymous: rate limiter fails open per RATE_LIMIT_FAIL_MODE')
  const create = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: AUTH, payload: { name: 'during-outage' } })
  t.equal(create.statusCode, 503)
  t.notMatch(create.body, /gw_/)
})

// The unknown-key throttle (docs/reliability.md, SC-08) counts only keys the store has no record
// of. Over real sockets, one client address per case, on both stores.
const FLOOD = 101 // one more than the default 100 unknown keys per address per minute

async function serve (t: Teardownable, env: Record<string, string>): Promise<{ app: FastifyInstance, port: number }> {
  const app = await build(t, env)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as { port: number }).port }
}

/** `n` requests from `localAddress`, 10 at a time, each with the key `keyFor(i)`; their statuses. */
async function flood (port: number, localAddress: string, n: number, keyFor: (i: number) => string): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i += 10) {
    const batch = Array.from({ length: Math.min(10, n - i) }, async (_, j) =>
      (await http(port, `/api/users/flood/${i + j}`, { localAddress, headers: { 'x-api-key': keyFor(i + j) } })).status)
    statuses.push(...await Promise.all(batch))
  }
  return statuses
}

const counts = (statuses: number[]) => statuses.reduce<Record<number, number>>((c, s) => ({ ...c, [s]: (c[s] ?? 0) + 1 }), {})

for (const storage of ['embedded', 'redis'] as const) {
  const storeEnv: Record<string, string> = storage === 'redis' ? { STORAGE: 'redis', REDIS_URL } : {}

  t.test(`SC-08 ${storage}: a flood of a revoked or an expired key does not lock a valid key out of the address`, async (t) => {
    const b = await backend(t)
    const { app, port } = await serve(t, { USER_SERVICE_URL: b.url, ...storeEnv })
    const revoked = await createKey(app, { name: 'revoked' })
    await app.apiKeys.revoke(revoked.id)
    const expired = await app.apiKeys.create({ name: 'expired', expires_at: new Date(Date.now() - 60_000).toISOString() })
    for (const [label, raw] of [['revoked', revoked.raw], ['expired', expired.rawKey]]) {
      const ip = nextIp()
      const statuses = await flood(port, ip, FLOOD, () => raw)
      t.same(counts(statuses), { 401: FLOOD }, `${FLOOD} ${label}-key requests: every one a 401, never throttled`)
      const fresh = await createKey(app, { name: `fresh-after-${label}` })
      const res = await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': fresh.raw } })
      t.equal(res.status, 200, `a valid, never-used key from the same address is served after the ${label}-key flood`)
    }
    t.equal(b.hits, 2, 'only the two valid requests reached the backend')
  })

  t.test(`SC-08 ${storage}: random well-formed keys are throttled; a valid key from the same address still passes`, async (t) => {
    const b = await backend(t)
    const { app, port } = await serve(t, { USER_SERVICE_URL: b.url, ...storeEnv })
    const used = await createKey(app, { name: 'used' })
    const ip = nextIp()
    t.equal((await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': used.raw } })).status, 200)
    const statuses = await flood(port, ip, FLOOD + 20, () => generateApiKey().raw)
    t.same(statuses.filter((s) => s !== 401 && s !== 429), [], 'only 401 or 429')
    t.equal(statuses.filter((s) => s === 401).length, FLOOD - 1, 'the first 100 unknown keys get 401')
    t.equal(statuses.filter((s) => s === 429).length, 21, 'every unknown key after them gets 429')
    const more = await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': generateApiKey().raw } })
    t.equal(more.status, 429, 'another unknown key: still 429')
    t.ok(Number(more.headers['retry-after']) >= 1, 'with Retry-After')
    // A key cannot be guessed (256 random bits), so the throttle never refuses one that verifies:
    // a shared NAT address with a guessing client on it does not lock the other clients out.
    const fresh = await createKey(app, { name: 'fresh' })
    t.equal((await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': fresh.raw } })).status, 200, 'a never-used valid key from the throttled address is served')
    t.equal((await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': used.raw } })).status, 200, 'and a cached one too')
    const other = await http(port, '/api/users/me', { localAddress: nextIp(), headers: { 'x-api-key': generateApiKey().raw } })
    t.equal(other.status, 401, 'another address is unaffected')
    t.equal(b.hits, 3, 'no unknown key reached the backend')
  })
}

t.test('SC-08 after a Redis restart empties the key caches, a revoked-key flood still locks no valid key out', async (t) => {
  const b = await backend(t)
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const { app, port } = await serve(t, { USER_SERVICE_URL: b.url, STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() })
  const a = await createKey(app, { name: 'a' })
  const c = await createKey(app, { name: 'c' })
  const revoked = await createKey(app, { name: 'revoked' })
  await app.apiKeys.revoke(revoked.id)
  const ip = nextIp()
  t.equal((await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': a.raw } })).status, 200, 'a is verified and cached')
  t.same(counts(await flood(port, ip, FLOOD, () => revoked.raw)), { 401: FLOOD })
  await redis.restart()
  // The subscriber's reconnect tells the key cache to forget everything ('*').
  t.ok(await until(async () => /id=/.test(await rawCommand(redis.port, 'CLIENT LIST TYPE pubsub') ?? ''), 10_000), 'the subscriber reconnected')
  await sleep(200)
  for (const [label, k] of [['a (cached before the restart)', a], ['c (never used)', c]] as const) {
    let status = 503
    for (let waited = 0; status === 503 && waited < 10_000; waited += 50) {
      status = (await http(port, '/api/users/me', { localAddress: ip, headers: { 'x-api-key': k.raw } })).status
      if (status === 503) await sleep(50)
    }
    t.equal(status, 200, `${label}: served from the flooded address`)
  }
})
