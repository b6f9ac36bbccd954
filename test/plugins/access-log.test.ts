import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import metrics from '../../plugins/gateway-metrics.js'
import requestEnd from '../../plugins/request-end.js'
import accessLog, { ACCESS_LINE_FIELDS, requestSerializer } from '../../plugins/access-log.js'
import { redactUrl } from '../../lib/url-redaction.js'
import { loadConfig } from '../../lib/config.js'
import configPlugin from '../../plugins/config.js'
import { buildApp } from '../../src/app.js'
import { testConfig } from '../support/app.js'

type Line = Record<string, unknown>

const CANARY = 'gw_CANARYcanaryCANARYcanaryCANARYcanaryCANARYcan1234ab'

/** An app logging like the gateway (JSON at debug, Fastify's request lines off, credential
 *  headers redacted) into memory, with a service-like scope that sets a consumer. */
async function build (t: Test, loggerOptions: Record<string, unknown> = {}): Promise<{ app: FastifyInstance, raw: string[], lines: () => Line[] }> {
  const raw: string[] = []
  const stream = new Writable({
    write (chunk, _enc, cb) { raw.push(chunk.toString()); cb() }
  })
  const app = Fastify({
    logger: {
      level: 'debug',
      stream,
      redact: { paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie'], censor: '[REDACTED]' },
      ...loggerOptions
    },
    disableRequestLogging: true,
    trustProxy: true
  })
  await app.register(configPlugin, { config: loadConfig({ ADMIN_AUTH_ENABLED: 'false' }, { dotenv: false }) })
  app.decorateRequest('consumer', null)
  app.decorateRequest('proxyRetries', 0)
  await app.register(requestEnd)
  await app.register(metrics)
  await app.register(accessLog)
  app.get('/items/:id', async () => ({ ok: true }))
  app.get('/slow', async () => { await new Promise((resolve) => setTimeout(resolve, 300)); return 'late' })
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request, reply) => {
      const key = request.headers['x-api-key']
      if (key === undefined) return
      if (key !== 'good') {
        reply.code(401)
        throw Object.assign(new Error('invalid key'), { statusCode: 401 })
      }
      (request as unknown as { consumer: unknown }).consumer = { id: 'c-42', name: 'acme', rateLimit: null, burst: null, services: null }
    })
    const config = { metricPath: '/api/users' }
    scope.all('/api/users/*', { config }, async (request) => {
      if (request.headers['x-retried'] !== undefined) request.proxyRetries = 2
      return { ok: true }
    })
  })
  t.teardown(() => app.close())
  await app.ready()
  const lines = () => raw.map((l) => JSON.parse(l) as Line)
  return { app, raw, lines }
}

const accessLines = (lines: Line[]) => lines.filter((l) => l.msg === 'request completed' || l.msg === 'request aborted')

t.test('writes one info line per request with id, method, route, url, status, duration, ip and consumer', async (t) => {
  const { app, lines } = await build(t)
  const res = await app.inject({ method: 'POST', url: '/api/users/7?page=2', headers: { 'x-api-key': 'good', 'x-forwarded-for': '203.0.113.9' } })
  t.equal(res.statusCode, 200)
  const all = accessLines(lines())
  t.equal(all.length, 1)
  const line = all[0]
  t.equal(line.level, 30, 'info')
  t.equal(line.reqId, res.headers['x-request-id'] ?? line.reqId)
  t.type(line.reqId, 'string')
  t.equal(line.method, 'POST')
  t.equal(line.route, '/api/users')
  t.equal(line.url, '/api/users/7?page=2')
  t.equal(line.status, 200)
  t.type(line.duration_ms, 'number')
  t.ok((line.duration_ms as number) >= 0)
  t.equal(line.ip, '203.0.113.9')
  t.equal(line.consumer, 'c-42')
  t.notOk('retries' in line, 'no retries field when there were none')
})

t.test('a logger that reshapes lines (here a mixin) gets the same access line through pino', async (t) => {
  const { app, raw, lines } = await build(t, { mixin: () => ({ region: 'eu-1' }) })
  const res = await app.inject({ method: 'GET', url: '/api/users/7?api_key=secret', headers: { 'x-api-key': 'good' } })
  t.equal(res.statusCode, 200)
  const [line] = accessLines(lines())
  t.match(line, { level: 30, method: 'GET', route: '/api/users', url: '/api/users/7?api_key=[REDACTED]', status: 200, consumer: 'c-42', outcome: 'answered', region: 'eu-1', msg: 'request completed' })
  t.type(line.duration_ms, 'number')
  t.match(raw[raw.length - 1], /^\{"level":30,"time":\d+,"pid":\d+,"hostname":"[^"]*","region":"eu-1","reqId":"[^"]+","method":"GET","route"/, 'the same field order, after the mixin\'s')
})

t.test('logs the route template, and null for an anonymous consumer', async (t) => {
  const { app, lines } = await build(t)
  await app.inject('/items/99')
  await app.inject('/nope/123')
  const [a, b] = accessLines(lines())
  t.equal(a.route, '/items/:id')
  t.equal(a.consumer, null)
  t.equal(b.route, 'unmatched')
  t.equal(b.status, 404)
})

t.test('logs requests rejected by a hook', async (t) => {
  const { app, lines } = await build(t)
  await app.inject({ url: '/api/users/1', headers: { 'x-api-key': 'bad' } })
  const all = accessLines(lines())
  t.equal(all.length, 1)
  t.equal(all[0].status, 401)
  t.equal(all[0].consumer, null)
})

t.test('adds the number of retries when the request was retried', async (t) => {
  const { app, lines } = await build(t)
  await app.inject({ url: '/api/users/1', headers: { 'x-retried': '1' } })
  t.equal(accessLines(lines())[0].retries, 2)
})

t.test('writes only the fields it declares to the raw writer, in their declared order', async (t) => {
  const { app, lines } = await build(t)
  await app.inject({ url: '/api/users/1', headers: { 'x-api-key': 'good', 'x-retried': '1' } })
  await app.inject({ url: '/items/3' })
  const pinos = new Set(['level', 'time', 'pid', 'hostname', 'msg'])
  const declared: readonly string[] = ACCESS_LINE_FIELDS
  for (const line of accessLines(lines())) {
    const own = Object.keys(line).filter((k) => !pinos.has(k))
    t.same(own, declared.filter((k) => own.includes(k)), 'declared, in order')
  }
  t.ok(accessLines(lines())[0].retries, 'the optional fields are among them')
})

t.test('redacts key-like query parameters and keeps the others in order', async (t) => {
  t.equal(redactUrl('/a?x=1&apikey=s3cret&y=2'), '/a?x=1&apikey=[REDACTED]&y=2')
  for (const name of ['apikey', 'api_key', 'key', 'token', 'access_token', 'ApiKey', 'API_KEY', 'api%5Fkey', 'Access_Token']) {
    t.equal(redactUrl(`/p?${name}=s3cret&z=9`), `/p?${name}=[REDACTED]&z=9`, name)
  }
  t.equal(redactUrl('/p?token'), '/p?token=[REDACTED]', 'a bare name')
  t.equal(redactUrl('/p?keyboard=1&monkey=2'), '/p?keyboard=1&monkey=2', 'only whole names')
  t.equal(redactUrl('/plain/path'), '/plain/path')
  t.equal(redactUrl('/p?a=%zz&token=x'), '/p?a=%zz&token=[REDACTED]', 'a malformed escape does not throw')
})

t.test('redacts a gateway key anywhere in the url', async (t) => {
  t.equal(redactUrl(`/api/users/${CANARY}/x`), '/api/users/gw_[REDACTED]/x')
  t.equal(redactUrl(`/p?q=${CANARY}`), '/p?q=gw_[REDACTED]')
})

t.test('offers a req serializer that redacts the url', async (t) => {
  const raw: string[] = []
  const app = Fastify({
    logger: { level: 'info', serializers: { req: requestSerializer }, stream: new Writable({ write (c, _e, cb) { raw.push(c.toString()); cb() } }) }
  })
  app.get('/x', async (request) => { request.log.info({ req: request }, 'explicit'); return 'ok' })
  t.teardown(() => app.close())
  await app.inject(`/x?apikey=${CANARY}`)
  const text = raw.join('')
  t.match(text, /apikey=\[REDACTED\]/)
  t.notOk(text.includes('CANARY'))
})

t.test('cuts very long urls', async (t) => {
  const out = redactUrl('/p?q=' + 'a'.repeat(10_000))
  t.ok(out.length <= 2049)
})

t.test('never logs a credential sent in headers, query string or body', async (t) => {
  const { app, raw } = await build(t)
  const basic = Buffer.from(`admin:${CANARY}`).toString('base64')
  await app.inject({ url: `/api/users/1?apikey=${CANARY}&api_key=${encodeURIComponent(CANARY)}`, headers: { 'x-api-key': CANARY } })
  await app.inject({ url: '/api/users/1', headers: { authorization: `Bearer ${CANARY}`, cookie: `session=${CANARY}` } })
  await app.inject({ url: '/items/1', headers: { authorization: `Basic ${basic}` } })
  await app.inject({ method: 'POST', url: '/api/users/1', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ key: CANARY }) })
  await app.inject({ url: `/${CANARY}?token=${CANARY}` })
  const text = raw.join('')
  t.ok(raw.length >= 5)
  t.notOk(text.includes('CANARY'), 'no raw key')
  t.notOk(text.includes(basic), 'no Basic credentials')
  t.notOk(text.includes(Buffer.from(CANARY).toString('base64')), 'no base64 of the key')
  t.notOk(text.includes(encodeURIComponent(CANARY).slice(0, 20)), 'no url-encoded key')
})

t.test('logs a client that disconnects before the response once, as 499', async (t) => {
  const { app, lines } = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const req = httpRequest({ host: '127.0.0.1', port, path: '/slow' })
  req.on('error', () => {})
  req.end()
  // Wait until the request reached the server (its metrics in-flight count), then disconnect.
  for (let i = 0; i < 400; i++) {
    const text = await app.gatewayMetrics.registry.getSingleMetricAsString('gateway_requests_in_flight')
    if (/ 1$/m.test(text)) break
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  req.destroy()
  for (let i = 0; i < 400 && accessLines(lines()).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 400)) // the handler finishes later: no second line
  const all = accessLines(lines())
  t.equal(all.length, 1)
  t.equal(all[0].status, 499)
  t.equal(all[0].aborted, true)
  t.equal(all[0].route, '/slow')
  t.ok((all[0].duration_ms as number) > 0)
})

t.test('a gateway key with a percent-encoded prefix or body never reaches the log, whatever route it takes', async (t) => {
  const { buildApp, REDACT } = await import('../../src/app.js')
  const { testConfig } = await import('../support/app.js')
  const { generateApiKey } = await import('../../lib/api-key-format.js')
  const raw: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { raw.push(chunk.toString()); cb() } })
  const app = await buildApp(testConfig(t, { LOG_LEVEL: 'debug', USER_SERVICE_URL: 'http://127.0.0.1:9' }), {
    logger: { level: 'debug', stream, redact: { paths: REDACT, censor: '[REDACTED]' }, serializers: { req: requestSerializer } }
  })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const key = generateApiKey().raw
  const secret = key.slice(3)
  const encodedBody = secret.replace(/[-_]/g, (c) => encodeURIComponent(c) === c ? '%' + c.charCodeAt(0).toString(16) : c)
  const urls = [
    `/health?q=gw%5F${secret}`,
    `/health?q=gw%5f${secret}&x=1`,
    `/gw%5f${secret}`,
    `/api/users/gw%5F${secret}/profile`,
    `/health?q=${encodeURIComponent(key)}`,
    `/health?q=gw_${encodedBody}`,
    `/health?q=%67%77%5f${secret}`,
    `/health?q=gw%255F${secret}`,
    `/health?bad=%zz&q=gw%5F${secret}%zz`
  ]
  for (const url of urls) {
    await new Promise<void>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: url, agent: false }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject).end()
    })
  }
  const text = raw.join('')
  t.ok(raw.filter((l) => l.includes('request completed')).length >= urls.length, 'every request was logged')
  for (const form of [secret, secret.slice(0, 24), secret.slice(-24), Buffer.from(secret).toString('base64').slice(0, 24), encodeURIComponent(secret).slice(0, 24)]) {
    t.notOk(text.includes(form), `the secret (${form.slice(0, 6)}…) is not in the log`)
  }
  t.match(text, /gw_\[REDACTED\]/)
})

t.test('redacts a key behind percent-escapes and leaves other escapes as sent', async (t) => {
  t.equal(redactUrl(`/a/gw%5f${CANARY.slice(3)}/b?x=%41`), '/a/gw_[REDACTED]/b?x=%41')
  t.equal(redactUrl(`/a?q=gw%5F${CANARY.slice(3)}&r=%zz`), '/a?q=gw_[REDACTED]&r=%zz')
  t.equal(redactUrl('/a%2Fb?c=%E2%82%AC&d=%'), '/a%2Fb?c=%E2%82%AC&d=%', 'nothing key-like: unchanged')
})

t.test('redacts a key in the query string in every form the proxy removes it from', async (t) => {
  const pct = (s: string) => [...s].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('')
  const body = CANARY.slice(3)
  const urls = [
    `/p?x=${pct(CANARY)}&y=1`,
    `/p?x=%67%77%5F${body}`,
    `/p?x=%67w_${body}`,
    `/p?${CANARY}`,
    `/p?a=1&${CANARY}`,
    `/p?${CANARY}=`,
    `/p?${CANARY}=1&b=2`,
    `/p?x=${pct(pct(CANARY))}`,
    `/p?auth=Bearer%20${CANARY}`
  ]
  for (const url of urls) {
    const out = redactUrl(url)
    t.notOk(out.includes(body.slice(0, 16)) || out.includes(pct(body).slice(0, 24)), `${url.slice(0, 24)}…: the key is redacted (${out})`)
    t.match(out, /\[REDACTED\]/)
  }
})

/** The whole gateway, logging at `level` into memory. */
async function gateway (t: Test, level: string, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, lines: () => Line[] }> {
  const raw: string[] = []
  const app = await buildApp(testConfig(t, env), { logger: { level, stream: { write: (line: string) => { raw.push(line) } } } })
  t.teardown(() => app.close())
  await app.ready()
  return { app, lines: () => raw.map((l) => JSON.parse(l) as Line) }
}

const PROBES = ['/health', '/ready', '/metrics']
const routesLogged = (lines: Line[]) => accessLines(lines).map((l) => l.route)

t.test('probes and scrapes (/health, /ready, /metrics) are logged at debug, other requests at info', async (t) => {
  const info = await gateway(t, 'info')
  for (const path of [...PROBES, '/info', '/health?x=1']) await info.app.inject(path)
  t.same(routesLogged(info.lines()), ['/info'], 'at LOG_LEVEL=info only /info has an access line')

  const debug = await gateway(t, 'debug')
  for (const path of [...PROBES, '/info']) await debug.app.inject(path)
  const lines = accessLines(debug.lines())
  t.same(lines.map((l) => [l.route, l.level]), [['/health', 20], ['/ready', 20], ['/metrics', 20], ['/info', 30]], 'at debug they are there, at level debug')
})

t.test('LOG_PROBES=true logs probes and scrapes at info like any request', async (t) => {
  const { app, lines } = await gateway(t, 'info', { LOG_PROBES: 'true' })
  for (const path of PROBES) await app.inject(path)
  t.same(accessLines(lines()).map((l) => [l.route, l.level]), [['/health', 30], ['/ready', 30], ['/metrics', 30]])
})
