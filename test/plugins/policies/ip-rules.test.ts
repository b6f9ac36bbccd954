// Per-service IP rules over real sockets (docs/policies.md#ip-rules): the client picks its source
// address (127.0.0.2-9, and ::1), the gateway answers 403 before authentication, deny wins, a
// spoofed X-Forwarded-For changes nothing without TRUST_PROXY, and WebSocket upgrades obey the
// same rules. Bad CIDRs are config errors at start and 400 from the admin API.
import { request as httpRequest } from 'node:http'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, configProblems, listen, routesFile, testConfig } from '../../support/app.js'
import { startBackend } from '../../support/backends.js'
import { http, type HttpResponse } from '../../support/http.js'
import { startWsBackend } from '../../support/ws-backend.js'
import { dial, type Refusal } from '../../support/ws-client.js'

async function gateway (t: Test, policy: Record<string, unknown>, env: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const file = routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: backend.url }], ...policy, ...extra }])
  const { app, url } = await listen(t, { ROUTES_FILE: file, ...env })
  return { app, backend, port: Number(new URL(url).port) }
}

const from = (port: number, ip: string, headers: Record<string, string> = {}): Promise<HttpResponse> =>
  http(port, '/svc/x', { localAddress: ip, headers })

t.test('an allow list admits only its addresses; a deny list inside it wins', async (t) => {
  const { backend, port } = await gateway(t, { ipAllow: ['127.0.0.2/31', '127.0.0.8'], ipDeny: ['127.0.0.3'] })
  t.equal((await from(port, '127.0.0.2')).status, 200, '.2 is in 127.0.0.2/31')
  t.equal((await from(port, '127.0.0.8')).status, 200, 'a bare address is a /32')
  const denied = await from(port, '127.0.0.3')
  t.equal(denied.status, 403, '.3 is allowed and denied: deny wins')
  t.same({ status: denied.json().status, error: denied.json().error }, { status: 'error', error: 'Forbidden' })
  t.match(denied.json().message, /client address/)
  t.match(denied.headers['content-type'], /application\/json/)
  for (const ip of ['127.0.0.4', '127.0.0.9']) t.equal((await from(port, ip)).status, 403, `${ip} is not allowed`)
  t.equal(backend.hits, 2, 'refused requests never reach the backend')
})

t.test('a deny list alone refuses its addresses and admits the rest', async (t) => {
  const { port } = await gateway(t, { ipDeny: ['127.0.0.4/30'] })
  const answers: Record<string, number> = {}
  for (let i = 2; i <= 9; i++) answers[`127.0.0.${i}`] = (await from(port, `127.0.0.${i}`)).status
  t.same(answers, {
    '127.0.0.2': 200, '127.0.0.3': 200, '127.0.0.4': 403, '127.0.0.5': 403, '127.0.0.6': 403, '127.0.0.7': 403, '127.0.0.8': 200, '127.0.0.9': 200
  })
})

t.test('a refused address gets 403 before authentication and takes no rate-limit token', async (t) => {
  const { port } = await gateway(t, { ipDeny: ['127.0.0.5'], auth: 'required' })
  const noKey = await from(port, '127.0.0.5')
  t.equal(noKey.status, 403, 'no key: 403, not 401')
  t.equal(noKey.headers['www-authenticate'], undefined)
  t.equal(noKey.headers['x-ratelimit-remaining'], undefined, 'the rate limiter was not asked')
  const badKey = await from(port, '127.0.0.5', { 'x-api-key': 'gw_not-a-real-key' })
  t.equal(badKey.status, 403, 'a bad key is not even looked at')
  t.equal((await from(port, '127.0.0.6')).status, 401, 'an admitted address still needs its key')
})

t.test('without TRUST_PROXY a spoofed X-Forwarded-For changes nothing', async (t) => {
  const { port } = await gateway(t, { ipAllow: ['10.0.0.0/8'], ipDeny: ['127.0.0.6'] })
  t.equal((await from(port, '127.0.0.5', { 'x-forwarded-for': '10.1.2.3' })).status, 403, 'claiming an allowed address does not help')
  const { port: port2 } = await gateway(t, { ipDeny: ['127.0.0.6'] })
  t.equal((await from(port2, '127.0.0.6', { 'x-forwarded-for': '192.0.2.1' })).status, 403, 'claiming another address does not escape a deny')
  t.equal((await from(port2, '127.0.0.7', { 'x-forwarded-for': '127.0.0.6' })).status, 200, 'nor can a client be framed by its header')
})

t.test('with TRUST_PROXY the rules see the client the trusted proxy reports', async (t) => {
  const { port } = await gateway(t, { ipAllow: ['10.0.0.0/8'] }, { TRUST_PROXY: '127.0.0.7' })
  t.equal((await from(port, '127.0.0.7', { 'x-forwarded-for': '10.1.2.3' })).status, 200, 'the trusted proxy forwards an allowed client')
  t.equal((await from(port, '127.0.0.7', { 'x-forwarded-for': '192.0.2.1' })).status, 403, 'and a refused one')
  t.equal((await from(port, '127.0.0.8', { 'x-forwarded-for': '10.1.2.3' })).status, 403, 'an untrusted peer is judged by its own address')
})

/** GET over IPv6 to [::1]:port. */
function overIpv6 (port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '::1', family: 6, port, path: '/svc/x', agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

async function ipv6Gateway (t: Test, policy: Record<string, unknown>): Promise<number> {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app: FastifyInstance = await build(t, { ROUTES_FILE: routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: backend.url }], ...policy }]) })
  const url = await app.listen({ host: '::1', port: 0 })
  return Number(new URL(url).port)
}

t.test('IPv6: ::1 is matched by IPv6 CIDRs, and an IPv4-only allow list refuses it', async (t) => {
  t.equal(await overIpv6(await ipv6Gateway(t, { ipAllow: ['::1/128'] })), 200, 'allowed by ::1/128')
  t.equal(await overIpv6(await ipv6Gateway(t, { ipAllow: ['::/0'], ipDeny: ['::1'] })), 403, 'denied by ::1')
  t.equal(await overIpv6(await ipv6Gateway(t, { ipAllow: ['127.0.0.0/8'] })), 403, 'not in an IPv4 list')
  t.equal(await overIpv6(await ipv6Gateway(t, { ipDeny: ['127.0.0.0/8', 'fe80::/10'] })), 200, 'not in a deny list of other addresses')
})

t.test('a WebSocket upgrade from a refused address gets 403; an admitted one is tunnelled', async (t) => {
  const ws = await startWsBackend()
  t.teardown(() => ws.close())
  const file = routesFile(t, [{ name: 'chat', prefix: '/chat', websocket: true, backends: [{ url: ws.url }], ipDeny: ['127.0.0.3'] }])
  const { url } = await listen(t, { ROUTES_FILE: file })
  const wsUrl = url.replace('http:', 'ws:') + '/chat/room'
  const refused = await dial(wsUrl, { localAddress: '127.0.0.3', teardown: t }).then(() => null, (err: Refusal) => err)
  t.equal(refused?.status, 403)
  t.match(JSON.parse(refused?.body ?? '{}'), { status: 'error', error: 'Forbidden' })
  const open = await dial(wsUrl, { localAddress: '127.0.0.2', teardown: t })
  t.equal(open.readyState, open.OPEN)
  open.close()
  t.equal(ws.handshakes.length, 1, 'only the admitted upgrade reached the backend')
})

t.test('a bad CIDR in the routes file is a start-up error naming the field', async (t) => {
  const problems = configProblems(() => testConfig(t, {
    ROUTES_FILE: routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: 'http://127.0.0.1:9' }], ipAllow: ['10.0.0.0/8', '10.0.0.0/33'], ipDeny: ['not-an-ip'] }])
  }))
  t.equal(problems.length, 2, problems.join('\n'))
  t.match(problems[0], /^ROUTES_FILE: services\.0\.ipAllow\.1: "10\.0\.0\.0\/33" is not an IPv4 or IPv6 address or CIDR/)
  t.match(problems[1], /^ROUTES_FILE: services\.0\.ipDeny\.0: "not-an-ip"/)
})

t.test('the admin API refuses a bad CIDR with 400, and shows and applies good rules at once', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  const auth = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }
  const put = (body: unknown) => app.inject({ method: 'PUT', url: '/admin/services/svc', headers: auth, payload: body as object })
  const bad = await put({ prefix: '/svc', backends: [{ url: backend.url }], ipDeny: ['127.0.0.300'] })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /ipDeny\.0: "127\.0\.0\.300" is not an IPv4 or IPv6 address or CIDR/)
  t.equal((await put({ prefix: '/svc', backends: [{ url: backend.url }], ipDeny: ['127.0.0.4'] })).statusCode, 201)
  const listed = (await app.inject({ url: '/admin/services/svc', headers: auth })).json()
  t.same(listed.data.ipDeny, ['127.0.0.4'])
  t.equal((await from(port, '127.0.0.4')).status, 403)
  t.equal((await from(port, '127.0.0.5')).status, 200)
  const doc = (await app.inject({ url: '/admin/openapi.json', headers: auth })).json()
  const schemas = JSON.stringify(doc)
  for (const field of ['ipAllow', 'ipDeny', 'requestHeaders', 'responseHeaders']) t.ok(schemas.includes(`"${field}"`), `${field} is in the OpenAPI document`)
})
