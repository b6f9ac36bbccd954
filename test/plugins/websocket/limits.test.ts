// WebSocket tunnels and the gateway's load bounds (docs/reliability.md, FT-18), over real sockets:
// a tunnel holds no HTTP concurrency slot once its handshake is over, and tunnels have bounds of
// their own (a service's maxTunnels, MAX_WEBSOCKET_TUNNELS) that refuse an upgrade with 503 before
// the backend is dialled.
import t from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { listen, routesFile } from '../../support/app.js'
import { type Teardownable, until } from '../../support/basics.js'
import { http, metricValue, parseMetrics } from '../../support/http.js'
import { isEnvelope, service } from '../../support/suite.js'
import { echoUpstream } from '../../support/upstreams.js'
import { startWsBackend, type WsBackend } from '../../support/ws-backend.js'
import { dial, type Refusal } from '../../support/ws-client.js'

const AUTH = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }

async function backend (t: Teardownable): Promise<WsBackend> {
  const b = await startWsBackend()
  t.teardown(() => b.close())
  return b
}

async function gateway (t: Teardownable, services: unknown[], env: Record<string, string> = {}) {
  const { app, url } = await listen(t, { ROUTES_FILE: routesFile(t, services), RATE_LIMIT_BURST: '10000', RATE_LIMIT_RPM: '100000', ...env })
  return { app, port: Number(new URL(url).port), ws: url.replace('http:', 'ws:') }
}

// stripPrefix: `/chat/health` reaches the ws backend's own `/health` (200), a plain HTTP request.
const chat = (url: string, extra: Record<string, unknown> = {}) =>
  service('chat', '/chat', url, { websocket: true, stripPrefix: true, ...extra })

const refusal = async (t: Teardownable, url: string): Promise<Refusal> =>
  await dial(url, { teardown: t }).then(() => ({ status: 101, headers: {}, body: '' }), (e: Refusal) => e)

function isTunnelShed (r: Refusal): boolean {
  return r.status === 503 && r.headers['retry-after'] === '1' && r.headers['x-gateway-overload'] === 'tunnels' && isEnvelope(r.body)
}

async function metrics (app: FastifyInstance) {
  return parseMetrics((await app.inject({ url: '/metrics' })).body)
}

const openTunnels = async (app: FastifyInstance, name = 'chat') => metricValue(await metrics(app), 'gateway_websocket_tunnels_open', { service: name })

async function closeAndWait (app: FastifyInstance, ws: WebSocket, name: string, remaining: number): Promise<boolean> {
  ws.close()
  return await until(async () => await openTunnels(app, name) === remaining, 5000)
}

t.test('FT-18 idle tunnels hold no HTTP concurrency slot: with MAX_CONCURRENT_REQUESTS=2, 5 tunnels open and HTTP still flows', async (t) => {
  const b = await backend(t)
  const api = await echoUpstream(t)
  const { app, port, ws } = await gateway(t, [chat(b.url), service('api', '/api', api.url)], { MAX_CONCURRENT_REQUESTS: '2' })
  const tunnels: WebSocket[] = []
  for (let i = 0; i < 5; i++) {
    const r = await dial(`${ws}/chat/room`, { teardown: t }).catch((e: Refusal) => e)
    t.ok(r instanceof WebSocket, `tunnel ${i + 1} opens (${r instanceof WebSocket ? 101 : (r as Refusal).status})`)
    if (r instanceof WebSocket) tunnels.push(r)
  }
  t.equal(tunnels.length, 5)
  t.equal(await openTunnels(app), 5, 'five tunnels open')
  t.equal((await http(port, '/api/x')).status, 200, 'another service answers')
  t.equal((await http(port, '/chat/health')).status, 200, 'the tunnels\' own service answers plain HTTP')
  // Both slots at once: neither is taken by a tunnel.
  const both = await Promise.all([http(port, '/api/a'), http(port, '/chat/health')])
  t.same(both.map((r) => r.status), [200, 200], 'two requests in flight together')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_requests_shed_total', { service: 'api' }), 0, 'nothing shed')
  t.equal(metricValue(m, 'gateway_requests_shed_total', { service: 'chat' }), 0)
  // And the tunnels still work.
  tunnels[0].send('hello')
  const echoed = await new Promise<Buffer>((resolve) => tunnels[0].once('message', resolve))
  t.equal(echoed.toString(), 'hello')
})

t.test('FT-18 maxTunnels: the tunnel over the bound is refused with 503 before the backend is dialled; a closed one makes room', async (t) => {
  const b = await backend(t)
  const { app, port, ws } = await gateway(t, [chat(b.url, { maxConcurrent: 2, maxTunnels: 3 })])
  const tunnels: WebSocket[] = []
  for (let i = 0; i < 3; i++) tunnels.push(await dial(`${ws}/chat/room`, { teardown: t }))
  t.equal(b.handshakes.length, 3)

  const fourth = await refusal(t, `${ws}/chat/room`)
  t.ok(isTunnelShed(fourth), `the 4th: 503, Retry-After: 1, X-Gateway-Overload: tunnels, the envelope (${fourth.status} ${JSON.stringify(fourth.headers)} ${fourth.body})`)
  t.equal(JSON.parse(fourth.body).error, 'Service Unavailable')
  t.equal(b.handshakes.length, 3, 'the backend never saw the refused upgrade')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'shed' }), 1, 'counted as shed')
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'accepted' }), 3)
  t.equal(metricValue(m, 'gateway_requests_shed_total', { service: 'chat' }), 0, 'no HTTP request was shed')
  t.equal((await http(port, '/chat/health')).status, 200, 'maxConcurrent 2 is free for plain HTTP while 3 tunnels are open')

  t.ok(await closeAndWait(app, tunnels[0], 'chat', 2), 'one tunnel closed')
  const next = await dial(`${ws}/chat/room`, { teardown: t })
  t.equal(next.readyState, WebSocket.OPEN, 'a new tunnel opens in its place')
  t.ok(isTunnelShed(await refusal(t, `${ws}/chat/room`)), 'and the bound holds again')
})

t.test('FT-18 MAX_WEBSOCKET_TUNNELS bounds the tunnels of every service together', async (t) => {
  const b = await backend(t)
  const { app, ws } = await gateway(t, [chat(b.url), service('feed', '/feed', b.url, { websocket: true })], { MAX_WEBSOCKET_TUNNELS: '2' })
  const first = await dial(`${ws}/chat/room`, { teardown: t })
  await dial(`${ws}/feed/x`, { teardown: t })
  for (const path of ['/chat/room', '/feed/x']) {
    const r = await refusal(t, `${ws}${path}`)
    t.ok(isTunnelShed(r), `${path}: 503 tunnels (${r.status} ${JSON.stringify(r.headers)})`)
  }
  t.equal(b.handshakes.length, 2, 'the backend saw only the two tunnels')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'shed' }), 1)
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'feed', outcome: 'shed' }), 1)
  t.ok(await closeAndWait(app, first, 'chat', 0), 'the chat tunnel closed')
  const again = await dial(`${ws}/feed/y`, { teardown: t })
  t.equal(again.readyState, WebSocket.OPEN, 'room for one more, on any service')
})

t.test('an upgrade still in its handshake holds its tunnel place', async (t) => {
  const b = await startWsBackend({ handshakeDelayMs: 300 })
  t.teardown(() => b.close())
  const { ws } = await gateway(t, [chat(b.url, { maxTunnels: 1 })])
  const [first, second] = await Promise.all([refusal(t, `${ws}/chat/room`), refusal(t, `${ws}/chat/room`)])
  t.same([first.status, second.status].sort(), [101, 503], 'two at once: one tunnel, one refused')
  t.equal(b.handshakes.length, 1, 'only one reached the backend')
})

t.test('a failed upgrade gives its tunnel place back', async (t) => {
  const b = await backend(t)
  b.refuse(403, 'no')
  const { ws } = await gateway(t, [chat(b.url, { maxTunnels: 1 })])
  for (let i = 0; i < 3; i++) t.equal((await refusal(t, `${ws}/chat/room`)).status, 403, `refusal ${i + 1} relayed, not shed`)
  b.refuse(null)
  t.equal((await dial(`${ws}/chat/room`, { teardown: t })).readyState, WebSocket.OPEN, 'the one place is free')
})

t.test('FT-18 tunnel counts follow a service across admin updates', async (t) => {
  const b = await backend(t)
  const { app, ws } = await gateway(t, [chat(b.url, { maxTunnels: 2 })], { SERVICES_SOURCE: 'store' })
  const patch = async (body: unknown) =>
    await app.inject({ method: 'PATCH', url: '/admin/services/chat', headers: AUTH, payload: body as object })
  const tunnels = [await dial(`${ws}/chat/room`, { teardown: t }), await dial(`${ws}/chat/room`, { teardown: t })]
  t.equal((await patch({ timeoutMs: 4000 })).statusCode, 200, 'an unrelated change rebuilds the route')
  t.ok(isTunnelShed(await refusal(t, `${ws}/chat/room`)), 'the two open tunnels still count against maxTunnels 2')
  t.equal((await patch({ maxTunnels: 3 })).statusCode, 200)
  tunnels.push(await dial(`${ws}/chat/room`, { teardown: t }))
  t.ok(isTunnelShed(await refusal(t, `${ws}/chat/room`)), 'maxTunnels 3: the 4th is refused')
  t.equal((await patch({ maxTunnels: 1 })).statusCode, 200)
  t.equal(tunnels.filter((c) => c.readyState === WebSocket.OPEN).length, 3, 'a lower bound closes no open tunnel')
  t.ok(await closeAndWait(app, tunnels[0], 'chat', 2), 'one closed')
  t.ok(isTunnelShed(await refusal(t, `${ws}/chat/room`)), 'still 2 open over maxTunnels 1')
  t.equal((await patch({ maxTunnels: null })).statusCode, 200, 'null removes the bound')
  t.equal((await dial(`${ws}/chat/room`, { teardown: t })).readyState, WebSocket.OPEN)
})

t.test('a bad maxTunnels is 400 from /admin/services and the field is in the OpenAPI document', async (t) => {
  const b = await backend(t)
  const { app } = await gateway(t, [chat(b.url)], { SERVICES_SOURCE: 'store' })
  const body = (maxTunnels: unknown) => ({ prefix: '/room', backends: [{ url: b.url }], websocket: true, maxTunnels })
  for (const bad of [0, -1, 1.5, 'many']) {
    const res = await app.inject({ method: 'PUT', url: '/admin/services/room', headers: AUTH, payload: body(bad) })
    t.equal(res.statusCode, 400, `maxTunnels ${JSON.stringify(bad)}`)
    t.match(res.json().message, /^maxTunnels: /)
  }
  const patched = await app.inject({ method: 'PATCH', url: '/admin/services/chat', headers: AUTH, payload: { maxTunnels: 0 } })
  t.equal(patched.statusCode, 400)
  t.match(patched.json().message, /^maxTunnels: /)
  const ok = await app.inject({ method: 'PUT', url: '/admin/services/room', headers: AUTH, payload: body(5) })
  t.equal(ok.statusCode, 201)
  t.equal(ok.json().data.service.maxTunnels, 5)
  const doc = (await app.inject({ url: '/admin/openapi.json', headers: AUTH })).json()
  const schema = doc.paths['/admin/services/{name}'].put.requestBody.content['application/json'].schema
  t.match(schema.properties.maxTunnels, { type: 'integer', minimum: 1 }, 'documented from the schema')
})
