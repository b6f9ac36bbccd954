// Admin Basic auth (docs/admin-api.md#authentication-and-errors; docs/reliability.md, BI-23, SC-07, SC-01): every bad form is the 401
// envelope with WWW-Authenticate, failures are throttled per client IP, the password is never
// logged.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import { REDACT, buildApp } from '../../src/app.js'
import { adminThrottleKey } from '../../plugins/admin-auth.js'
import { REDIS_URL, cleanRedis, testConfig, uniquePrefix } from '../support/app.js'
import { nextIp } from '../support/http.js'
import { RawConnection } from '../support/raw-client.js'
import { rawCommand, startRedis } from '../support/redis-server.js'

type Teardownable = Parameters<typeof testConfig>[0]
const PASSWORD = 'CanaryPw-7f3a9c-secret'
const CHALLENGE = 'Basic realm="gateway", charset="UTF-8"'
const basic = (user: string, password: string) => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')
const GOOD = basic('admin', PASSWORD)

function logCapture () {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      cb()
    }
  })
  return { stream, lines, text: () => lines.join('\n') }
}

/** The real gateway (src/app.ts), logging to `stream` with the app's own redaction when given. */
async function adminApp (t: Teardownable, env: Record<string, string> = {}, stream?: Writable): Promise<FastifyInstance> {
  const config = testConfig(t, { ADMIN_PASSWORD: PASSWORD, ...env })
  const app = await buildApp(config, stream === undefined
    ? { logger: false }
    : { logger: { level: 'debug', stream, redact: { paths: REDACT, censor: '[REDACTED]' } } })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('the right credentials open the admin API', async (t) => {
  const app = await adminApp(t)
  const res = await app.inject({ url: '/admin/apikeys', headers: { authorization: GOOD } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().status, 'success')
})

t.test('every bad form of Authorization is the 401 envelope with WWW-Authenticate, never 400 or 500', async (t) => {
  const app = await adminApp(t)
  const cases: Record<string, string | undefined> = {
    'no header': undefined,
    'Basic with no token': 'Basic',
    'Basic and a space': 'Basic ',
    'invalid base64': 'Basic !!!not-base64!!!',
    'base64 without a colon': 'Basic ' + Buffer.from('adminpassword').toString('base64'),
    'empty user and password': 'Basic Og==',
    'wrong password': basic('admin', 'wrong'),
    'wrong user': basic('root', PASSWORD),
    'user containing a colon': basic('admin:x', PASSWORD),
    'password with a suffix': basic('admin', PASSWORD + 'x'),
    '8 KiB password': basic('admin', 'p'.repeat(8192)),
    'Latin-1 bytes': 'Basic ' + Buffer.from('adm\u00efn:p\u00e4ss', 'latin1').toString('base64'),
    'control character': 'Basic ' + Buffer.from('admin:\u0000' + PASSWORD).toString('base64'),
    'Bearer gateway key': 'Bearer gw_' + 'a'.repeat(49),
    'Digest scheme': 'Digest username="admin"',
    'credentials without scheme': Buffer.from(`admin:${PASSWORD}`).toString('base64')
  }
  let n = 0
  for (const [label, value] of Object.entries(cases)) {
    // A fresh address per case keeps the throttle out of this test.
    const res = await app.inject({ url: '/admin/apikeys', remoteAddress: `10.1.0.${++n}`, headers: value === undefined ? {} : { authorization: value } })
    t.equal(res.statusCode, 401, label)
    t.equal(res.headers['www-authenticate'], CHALLENGE, label)
    t.same(res.json(), { status: 'error', error: 'Unauthorized', message: 'Admin credentials are required (HTTP Basic auth)' }, label)
  }
})

t.test('a gateway API key never authorises the admin API', async (t) => {
  const app = await adminApp(t)
  const { rawKey } = await app.apiKeys.create({ name: 'k' })
  for (const headers of [{ 'x-api-key': rawKey }, { authorization: `Bearer ${rawKey}` }, { authorization: basic('admin', rawKey) }]) {
    t.equal((await app.inject({ url: '/admin/apikeys', headers })).statusCode, 401)
  }
})

t.test('two Authorization headers are refused even when one is right', async (t) => {
  const app = await adminApp(t)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  for (const order of [[GOOD, basic('admin', 'wrong')], [basic('admin', 'wrong'), GOOD], [GOOD, GOOD]]) {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1')
      let data = ''
      socket.on('data', (c) => { data += c.toString() })
      socket.on('end', () => resolve(data))
      socket.on('error', reject)
      socket.write(`GET /admin/apikeys HTTP/1.1\r\nHost: x\r\nAuthorization: ${order[0]}\r\nAuthorization: ${order[1]}\r\nConnection: close\r\n\r\n`)
    })
    t.match(reply, /^HTTP\/1\.1 401 /)
    t.match(reply, /www-authenticate: Basic realm="gateway"/i)
  }
})

t.test('after 10 failures from one address in a minute every attempt gets 429 for the rest of it, right password included', async (t) => {
  const app = await adminApp(t)
  const from = (remoteAddress: string, authorization: string) => app.inject({ url: '/admin/apikeys', remoteAddress, headers: { authorization } })
  const statuses: number[] = []
  for (let i = 0; i < 10; i++) statuses.push((await from('10.0.0.1', basic('admin', `guess${i}`))).statusCode)
  t.same(statuses, Array(10).fill(401))
  const eleventh = await from('10.0.0.1', basic('admin', 'guess11'))
  t.equal(eleventh.statusCode, 429)
  t.notOk('www-authenticate' in eleventh.headers)
  const locked = await from('10.0.0.1', GOOD)
  t.equal(locked.statusCode, 429)
  t.match(locked.json(), { status: 'error', error: 'Too Many Requests' })
  const retryAfter = Number(locked.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
  t.equal((await from('10.0.0.2', GOOD)).statusCode, 200, 'another address is unaffected')
  t.equal((await from('10.0.0.2', basic('admin', 'x'))).statusCode, 401)
})

t.test('failures are logged at warn with the client address and never the password', async (t) => {
  const log = logCapture()
  const app = await adminApp(t, { LOG_LEVEL: 'debug' }, log.stream)
  const wrong = 'WrongCanary-1b2c3d'
  for (let i = 0; i < 12; i++) await app.inject({ url: '/admin/apikeys', remoteAddress: '10.9.9.9', headers: { authorization: basic('admin', wrong) } })
  await app.inject({ url: '/admin/apikeys', remoteAddress: '10.9.9.8', headers: { authorization: GOOD } })
  await app.inject({ url: '/admin/apikeys', remoteAddress: '10.9.9.7', headers: { authorization: 'garbage' } })
  const entries = log.lines.map((l) => JSON.parse(l))
  const failed = entries.filter((e) => e.event === 'admin_auth_failed')
  t.equal(failed.length, 11)
  t.ok(failed.every((e) => e.level === 40), 'warn')
  t.match(failed[0], { ip: '10.9.9.9', user: 'admin' })
  t.match(failed.at(-1), { ip: '10.9.9.7' })
  t.ok(entries.some((e) => e.event === 'admin_auth_throttled' && e.ip === '10.9.9.9' && e.level === 40))
  const text = log.text()
  for (const secret of [wrong, PASSWORD, Buffer.from(`admin:${wrong}`).toString('base64'), Buffer.from(`admin:${PASSWORD}`).toString('base64')]) {
    t.notOk(text.includes(secret), `log never contains ${secret.slice(0, 8)}…`)
  }
})

t.test('a password typed into the user field is never logged; the configured user still is', async (t) => {
  const log = logCapture()
  const app = await adminApp(t, { LOG_LEVEL: 'debug' }, log.stream)
  const typedAsUser = 'pw-Secret-Canary-4e5f6a'
  // 12 attempts: the 11th and 12th are throttled, whose log line names the user too.
  for (let i = 0; i < 12; i++) await app.inject({ url: '/admin/apikeys', remoteAddress: '10.8.8.8', headers: { authorization: basic(typedAsUser, '') } })
  await app.inject({ url: '/admin/apikeys', remoteAddress: '10.8.8.7', headers: { authorization: basic('admin', 'wrong-password') } })
  await app.inject({ url: '/admin/apikeys', remoteAddress: '10.8.8.6', headers: { authorization: basic(`${typedAsUser}:x`, '') } })
  const text = log.text()
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  for (const form of [typedAsUser, typedAsUser.slice(0, 12), b64(typedAsUser), b64(`${typedAsUser}:`), b64(`${typedAsUser}:x:`)]) {
    t.notOk(text.includes(form), `no log line holds the typed user name (${form.slice(0, 8)}…)`)
  }
  const entries = log.lines.map((l) => JSON.parse(l))
  const fromSecret = entries.filter((e) => e.ip === '10.8.8.8' && typeof e.event === 'string' && e.event.startsWith('admin_auth_'))
  t.ok(fromSecret.some((e) => e.event === 'admin_auth_failed') && fromSecret.some((e) => e.event === 'admin_auth_throttled'), 'failures and the throttle are still logged')
  t.ok(fromSecret.every((e) => e.user === undefined && e.user_known === false), 'as user_known: false, without the user')
  const wrongPassword = entries.find((e) => e.event === 'admin_auth_failed' && e.ip === '10.8.8.7')
  t.match(wrongPassword, { user: 'admin', reason: 'bad credentials' }, 'the configured user is logged on a wrong password')
  t.notOk(text.includes('wrong-password'), 'and the password never')
})

t.test('ADMIN_AUTH_ENABLED=false opens the admin API and warns loudly at start', async (t) => {
  const log = logCapture()
  const app = await adminApp(t, { ADMIN_AUTH_ENABLED: 'false', ADMIN_PASSWORD: '' }, log.stream)
  const warn = log.lines.map((l) => JSON.parse(l)).find((e) => e.event === 'admin_auth_disabled')
  t.ok(warn, 'warned')
  t.equal(warn?.level, 40)
  t.match(warn?.msg, /DISABLED/)
  t.equal((await app.inject({ url: '/admin/apikeys' })).statusCode, 200)
})

t.test('routes outside /admin are not behind Basic auth', async (t) => {
  const app = await adminApp(t)
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
})

t.test('on Redis the failure counter is shared: failures on one instance lock the address on another', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => cleanRedis(prefix))
  const env = { STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: prefix }
  const g1 = await adminApp(t, env)
  const g2 = await adminApp(t, env)
  for (let i = 0; i < 11; i++) {
    const app = i % 2 === 0 ? g1 : g2
    await app.inject({ url: '/admin/apikeys', remoteAddress: '10.3.3.3', headers: { authorization: basic('admin', `g${i}`) } })
  }
  for (const app of [g1, g2]) {
    t.equal((await app.inject({ url: '/admin/apikeys', remoteAddress: '10.3.3.3', headers: { authorization: GOOD } })).statusCode, 429)
    t.equal((await app.inject({ url: '/admin/apikeys', remoteAddress: '10.3.3.4', headers: { authorization: GOOD } })).statusCode, 200)
  }
})

t.test('a right password after 10 checked failures is 429, and successes do not use up the allowance', async (t) => {
  const app = await adminApp(t)
  const from = (authorization: string) => app.inject({ url: '/admin/apikeys', remoteAddress: '10.0.4.1', headers: { authorization } })
  for (let i = 0; i < 25; i++) t.equal((await from(GOOD)).statusCode, 200, 'the admin at work is never throttled')
  for (let i = 0; i < 10; i++) t.equal((await from(basic('admin', `guess${i}`))).statusCode, 401)
  t.equal((await from(GOOD)).statusCode, 429, 'the right password is not checked once 10 wrong ones were')
})

/** A listening gateway (real sockets: pipelining and concurrency are socket behaviour). */
async function listening (t: Teardownable, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, port: number }> {
  const app = await adminApp(t, env)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as { port: number }).port }
}

const adminGet = (authorization: string) => `GET /admin/apikeys HTTP/1.1\r\nHost: gw\r\nAuthorization: ${authorization}\r\n\r\n`
const tally = (statuses: number[]) => statuses.reduce<Record<number, number>>((n, s) => { n[s] = (n[s] ?? 0) + 1; return n }, {})

/** 99 wrong passwords then the right one, pipelined on one connection from one address. */
async function pipelined (t: Teardownable, port: number): Promise<number[]> {
  const conn = await RawConnection.open(port, { localAddress: nextIp() })
  t.teardown(() => conn.destroy())
  const batch = Array.from({ length: 99 }, (_, i) => adminGet(basic('admin', `pipelined-${i}`))).join('') + adminGet(GOOD)
  await conn.write(batch)
  const responses = (await conn.waitForResponses(100, 20_000)).filter((r) => r.status >= 200)
  return responses.map((r) => r.status)
}

/** One wrong password per connection, `n` connections from `ip`, all written at once. */
async function concurrent (t: Teardownable, ports: number[], n: number, ip: string): Promise<number[]> {
  const conns = await Promise.all(Array.from({ length: n }, (_, i) => RawConnection.open(ports[i % ports.length], { localAddress: ip })))
  t.teardown(() => { for (const c of conns) c.destroy() })
  await Promise.all(conns.map((c, i) => c.write(adminGet(basic('admin', `concurrent-${i}`)))))
  const answers = await Promise.all(conns.map((c) => c.waitForResponses(1, 20_000)))
  const statuses = answers.map((r) => r.find((x) => x.status >= 200)?.status ?? 0)
  // The same address, now with the right password.
  const last = await RawConnection.open(ports[0], { localAddress: ip })
  t.teardown(() => last.destroy())
  await last.write(adminGet(GOOD))
  statuses.push((await last.waitForResponses(1, 20_000)).find((x) => x.status >= 200)?.status ?? 0)
  return statuses
}

for (const storage of ['embedded', 'redis'] as const) {
  const envFor = (t: Teardownable): Record<string, string> => {
    if (storage === 'embedded') return {}
    const prefix = uniquePrefix()
    t.teardown(() => cleanRedis(prefix))
    return { STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: prefix }
  }

  t.test(`${storage}: 100 attempts pipelined on one connection compare at most 10 passwords, the right one last is 429`, async (t) => {
    const { port } = await listening(t, envFor(t))
    const statuses = await pipelined(t, port)
    t.equal(statuses.length, 100, 'every request answered')
    t.same(tally(statuses), { 401: 10, 429: 90 }, 'exactly 10 passwords were checked')
    t.equal(statuses.at(-1), 429, 'the right password, sent last, is refused')
  })

  t.test(`${storage}: 40 concurrent connections compare at most 10 passwords, then the right one is 429`, async (t) => {
    let env: Record<string, string> = {}
    let slowDown = async (): Promise<void> => {}
    if (storage === 'redis') {
      // A Redis of our own that we can slow down, so the 40 attempts overlap for sure.
      const redis = await startRedis()
      t.teardown(() => redis.stop())
      env = { STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() }
      slowDown = async () => { await rawCommand(redis.port, 'CLIENT PAUSE 250 ALL') }
    }
    // On Redis two instances share the counter and the connections are split between them.
    const apps = storage === 'redis' ? [await listening(t, env), await listening(t, env)] : [await listening(t, env)]
    await slowDown()
    const ip = nextIp()
    const statuses = await concurrent(t, apps.map((a) => a.port), 40, ip)
    t.same(tally(statuses.slice(0, 40)), { 401: 10, 429: 30 }, '10 failures answered 401')
    t.equal((await apps[0].app.store.failures.peek(adminThrottleKey(ip))).count, 10, 'exactly 10 passwords were compared')
    t.equal(statuses[40], 429, 'the right password is refused after them')
  })
}
