// WebSocket tunnels (docs/proxying.md#websockets) over real sockets: an in-process gateway listening on a port, a real
// ws backend, real ws clients.
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../../src/app.js'
import { listen, routesFile, testConfig } from '../../support/app.js'
import { type Teardownable, until } from '../../support/basics.js'
import { metricValue, parseMetrics } from '../../support/http.js'
import { service } from '../../support/suite.js'
import { startWsBackend, type WsBackend, type WsBackendOptions } from '../../support/ws-backend.js'
import { dial } from '../../support/ws-client.js'

const AUTH = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }

async function backend (t: Teardownable, options: WsBackendOptions = {}): Promise<WsBackend> {
  const b = await startWsBackend(options)
  t.teardown(() => b.close())
  return b
}

async function gateway (t: Teardownable, services: unknown[], env: Record<string, string> = {}) {
  const { app, url } = await listen(t, { ROUTES_FILE: routesFile(t, services), RATE_LIMIT_BURST: '10000', RATE_LIMIT_RPM: '100000', ...env })
  return { app, ws: url.replace('http:', 'ws:') }
}

const wsService = (url: string, extra: Record<string, unknown> = {}) => service('chat', '/chat', url, { websocket: true, ...extra })

async function createKey (app: FastifyInstance): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/admin/apikeys', headers: AUTH, payload: { name: 'ws-client' } })
  return res.json().data.raw_key
}

function nextMessage (ws: WebSocket): Promise<{ data: Buffer, isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary })))
}

function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })))
}

/** Sends an upgrade request as raw bytes; resolves with everything received once the gateway closes. */
function rawUpgrade (port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (c) => { data += c.toString() })
    socket.on('end', () => resolve(data))
    socket.on('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
  })
}

async function metrics (app: FastifyInstance) {
  return parseMetrics((await app.inject({ url: '/metrics' })).body)
}

t.test('a WebSocket echo goes through with a key, which never reaches the backend', async (t) => {
  const b = await backend(t, { protocol: 'chat.v2' })
  const { app, ws: base } = await gateway(t, [wsService(b.url, { auth: 'required' })])
  const key = await createKey(app)
  const client = await dial(`${base}/chat/room?x=1`, { headers: { 'x-api-key': key }, protocols: ['chat.v1', 'chat.v2'] })
  t.equal(client.protocol, 'chat.v2', 'the backend chose the subprotocol, the client got it')
  t.match(client.extensions, /permessage-deflate/, 'compression negotiated because both ends support it')
  client.send('hello')
  const text = await nextMessage(client)
  t.same([text.data.toString(), text.isBinary], ['hello', false], 'a text message echoed as text')
  client.send(Buffer.from([0, 1, 2, 255]))
  const binary = await nextMessage(client)
  t.same([[...binary.data], binary.isBinary], [[0, 1, 2, 255], true], 'a binary message echoed as binary')

  const seen = b.handshakes[0]
  t.equal(seen.url, '/chat/room?x=1')
  t.notOk('x-api-key' in seen.headers, 'the credential is stripped from the upgrade request')
  t.notOk(seen.rawHeaders.join('\n').includes(key), 'the key is in no header line')
  t.ok(typeof seen.headers['x-request-id'] === 'string' && seen.headers['x-request-id'] !== '', 'request id forwarded')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(seen.headers['x-consumer-name'], 'ws-client')
  t.same(String(seen.headers['sec-websocket-protocol']).split(',').map((p) => p.trim()), ['chat.v1', 'chat.v2'], 'the client\'s offer reached the backend')

  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_websocket_tunnels_open', { service: 'chat' }), 1, 'one tunnel open')
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'accepted' }), 1)
  t.equal(metricValue(m, 'gateway_http_requests_total', { method: 'GET', path: '/chat', status: '101' }), 1, 'the upgrade request is counted as 101')
  t.equal(metricValue(m, 'gateway_requests_in_flight'), 1, 'the upgraded request is no longer in flight (1: the scrape itself)')

  const end = closed(client)
  client.close(4000, 'bye')
  t.equal((await end).code, 4000, 'the close code comes back from the backend')
  t.ok(await until(async () => metricValue(await metrics(app), 'gateway_websocket_tunnels_open', { service: 'chat' }) === 0, 5000), 'the gauge falls back to 0')
})

t.test('without compression on the backend, the client is not offered it either', async (t) => {
  const b = await backend(t, { deflate: false })
  const { ws: base } = await gateway(t, [wsService(b.url)])
  const client = await dial(`${base}/chat`)
  t.equal(client.extensions, '', 'no extension negotiated')
  t.equal(client.protocol, '', 'no subprotocol')
  client.close()
})

t.test('an upgrade without a key is refused when the service requires one, and a query-string key does not count', async (t) => {
  const b = await backend(t)
  const { app, ws: base } = await gateway(t, [wsService(b.url, { auth: 'required' })])
  const key = await createKey(app)
  const refused = await dial(`${base}/chat`).catch((e: { status: number, body: string }) => e)
  t.equal((refused as { status: number }).status, 401)
  t.match(JSON.parse((refused as { body: string }).body), { status: 'error', error: 'Unauthorized' }, 'the gateway\'s JSON envelope')
  const inQuery = await dial(`${base}/chat?access_token=${key}`).catch((e: { status: number }) => e)
  t.equal((inQuery as { status: number }).status, 401, '?access_token= is not a credential')
  t.equal(b.handshakes.length, 0, 'the backend never saw either upgrade')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'rejected' }), 2)
})

t.test('each upgrade takes one rate-limit token', async (t) => {
  const b = await backend(t)
  const { ws: base } = await gateway(t, [wsService(b.url, { rateLimit: { rpm: 1, burst: 2 } })])
  const first = await dial(`${base}/chat`)
  const second = await dial(`${base}/chat`)
  const third = await dial(`${base}/chat`).catch((e: { status: number }) => e)
  t.equal((third as { status: number }).status, 429, 'the third upgrade is over the burst')
  first.send('still here')
  t.equal((await nextMessage(first)).data.toString(), 'still here', 'messages on an open tunnel take no token')
  first.close()
  second.close()
})

t.test('an upgrade to a service without websocket: true is 400 and the connection is closed', async (t) => {
  const b = await backend(t)
  const { ws: base } = await gateway(t, [service('plain', '/plain', b.url)])
  const refused = await dial(`${base}/plain/x`).catch((e: { status: number, headers: Record<string, string> }) => e)
  t.equal((refused as { status: number }).status, 400)
  t.equal(b.handshakes.length, 0)
  // Raw bytes: exactly one response, then the gateway closes the socket (no half-open tunnel).
  const raw = await rawUpgrade(Number(new URL(base).port), '/plain/x')
  t.match(raw, /^HTTP\/1\.1 400 /)
  t.match(raw, /connection: close/i)
  t.equal(raw.match(/HTTP\/1\.1 /g)?.length, 1, 'one status line')
})

t.test('an upgrade aimed outside the prefix is 400', async (t) => {
  const b = await backend(t)
  const { ws: base } = await gateway(t, [wsService(b.url)])
  // Raw bytes: a WebSocket client would resolve the dot segments before sending.
  const raw = await rawUpgrade(Number(new URL(base).port), '/chat/%2e%2e/admin')
  t.match(raw, /^HTTP\/1\.1 400 /)
  t.equal(b.handshakes.length, 0)
})

t.test('an upgrade with a fragment in its target is 400, never a 500', async (t) => {
  const b = await backend(t)
  const { ws: base } = await gateway(t, [wsService(b.url)])
  const raw = await rawUpgrade(Number(new URL(base).port), '/chat/a#b')
  t.match(raw, /^HTTP\/1\.1 400 /)
  t.equal(b.handshakes.length, 0)
})

t.test('a backend that refuses the upgrade: its status and body go back to the client', async (t) => {
  const b = await backend(t)
  b.refuse(403, 'not in this room')
  const { app, ws: base } = await gateway(t, [wsService(b.url)])
  const refused = await dial(`${base}/chat`).catch((e: { status: number, body: string, headers: Record<string, string> }) => e) as { status: number, body: string, headers: Record<string, string> }
  t.equal(refused.status, 403)
  t.equal(refused.body, 'not in this room')
  t.equal(refused.headers['x-backend'], 'refused')
  t.ok(refused.headers['x-request-id'], 'the gateway\'s request id is added')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'backend_refused' }), 1)
  t.equal(metricValue(m, 'gateway_circuit_breaker_state', { service: 'chat' }), 1, 'a 4xx refusal is no breaker failure')
})

t.test('a backend that is down: 502, counted as a backend failure', async (t) => {
  const b = await backend(t)
  await b.close()
  const { app, ws: base } = await gateway(t, [wsService(b.url)], { CB_MAX_FAILURES: '1' })
  const refused = await dial(`${base}/chat`).catch((e: { status: number, body: string }) => e) as { status: number, body: string }
  t.equal(refused.status, 502)
  t.notMatch(refused.body, /127\.0\.0\.1|ECONN/, 'no internal address in the answer')
  const open = await dial(`${base}/chat`).catch((e: { status: number }) => e) as { status: number }
  t.equal(open.status, 503, 'the breaker opened: the next upgrade is refused at admission')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'backend_failed' }), 1)
  t.equal(metricValue(m, 'gateway_backend_errors_total', { service: 'chat' }), 1)
})

// Node notices the client left only when the gateway writes the 101; the backend answered by
// then, so its permit is a success and its new connection is closed with 1001.
t.test('a client that leaves while the backend is answering: no tunnel, counted as gone, the backend closed', async (t) => {
  const b = await backend(t, { handshakeDelayMs: 300 })
  const { app, ws: base } = await gateway(t, [wsService(b.url)], { CB_MAX_FAILURES: '1' })
  const socket = connect(Number(new URL(base).port), '127.0.0.1')
  socket.on('error', () => {})
  socket.write('GET /chat HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  t.ok(await until(() => b.handshakes.length === 1, 5000), 'the backend is dialled')
  socket.destroy()
  const gone = async () => metricValue(await metrics(app), 'gateway_websocket_upgrades_total', { service: 'chat', outcome: 'client_gone' }) === 1
  t.ok(await until(gone, 5000), 'counted as client_gone')
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_http_requests_total', { method: 'GET', path: '/chat', status: '499' }), 1, 'and as 499')
  t.equal(metricValue(m, 'gateway_websocket_tunnels_open', { service: 'chat' }), 0, 'no tunnel was opened')
  t.ok(await until(() => b.sockets.length === 1 && b.sockets[0].readyState === WebSocket.CLOSED, 5000), 'the backend connection is closed')
  const next = await dial(`${base}/chat`)
  next.send('after')
  t.equal((await nextMessage(next)).data.toString(), 'after', 'not a breaker failure: the next upgrade goes through')
  next.close()
})

t.test('a message over wsMaxMessageBytes closes the tunnel with 1009, in either direction', async (t) => {
  let backendSide: WebSocket | null = null
  const b = await backend(t, {
    onConnection (ws) {
      backendSide = ws
      ws.on('message', (data: Buffer) => { if (data.toString() === 'big please') ws.send(Buffer.alloc(2048)) })
    }
  })
  const { ws: base } = await gateway(t, [wsService(b.url, { wsMaxMessageBytes: 1024 })])

  const up = await dial(`${base}/chat`)
  const backendClosed = new Promise<number>((resolve) => { (backendSide as unknown as WebSocket).once('close', (code: number) => resolve(code)) })
  const upEnd = closed(up)
  up.send(Buffer.alloc(1025))
  t.equal((await upEnd).code, 1009, 'client → backend: the client gets 1009')
  t.equal(await backendClosed, 1009, 'and the backend is closed with 1009 too')

  const down = await dial(`${base}/chat`)
  const downEnd = closed(down)
  down.send('big please')
  t.equal((await downEnd).code, 1009, 'backend → client: the client gets 1009')
})

t.test('a side that answers no ping for wsIdleTimeoutMs is closed with 1001; a live one stays open', async (t) => {
  const b = await backend(t)
  const { ws: base } = await gateway(t, [wsService(b.url, { wsIdleTimeoutMs: 300 })])
  const dead = await dial(`${base}/chat`, { autoPong: false })
  const live = await dial(`${base}/chat`)
  const deadEnd = closed(dead)
  const end = await deadEnd
  t.equal(end.code, 1001, 'a client that never pongs is closed with 1001')
  t.equal(end.reason, 'idle timeout')
  t.equal(live.readyState, WebSocket.OPEN, 'a silent client that answers pings is still open')
  live.send('ping?')
  t.equal((await nextMessage(live)).data.toString(), 'ping?')
  live.close()
})

// Loopback TCP buffers on both hops absorb a few MB by themselves, so the backend writes well more
// than that: only the gateway pausing its read of the backend can stop it flushing everything.
t.test('16 MiB of frames to a slow reader: the backend is paused, nothing is lost', async (t) => {
  const FRAME = 16 * 1024
  const TOTAL = 1024 * FRAME
  let flushed = 0
  const b = await backend(t, {
    deflate: false,
    onConnection (ws) {
      ws.once('message', () => {
        // Send as fast as ws allows; count what TCP has taken (send callbacks).
        for (let i = 0; i < TOTAL / FRAME; i++) ws.send(Buffer.alloc(FRAME, i % 251), () => { flushed += FRAME })
      })
    }
  })
  const { ws: base } = await gateway(t, [wsService(b.url)])
  const client = await dial(`${base}/chat`)
  const received: Buffer[] = []
  client.on('message', (data: Buffer) => received.push(data))
  client.pause() // the slow reader: reads nothing for a while
  client.send('go')
  // Wait until the backend stops making progress (or has flushed everything).
  let last = -1
  await until(() => {
    const settled = flushed === last || flushed === TOTAL
    last = flushed
    return settled && flushed > 0
  }, 15000, 400)
  t.ok(flushed < TOTAL / 2, `while the client reads nothing, the backend is held back (${flushed} of ${TOTAL} bytes taken by TCP)`)
  client.resume()
  t.ok(await until(() => received.length === TOTAL / FRAME, 15000), 'every frame arrives once the client reads')
  t.ok(received.every((frame, i) => frame.length === FRAME && frame[0] === i % 251 && frame[FRAME - 1] === i % 251), 'in order, intact')
  client.close()
})

// The close line's bytes_out once counted every message read from the backend, those dropped after
// the client's close frame included (26 MB logged for 3.9 MB delivered).
t.test('FT-18 bytes_out counts what reached the client, not the flood dropped after it closed', async (t) => {
  const FRAME = 64 * 1024
  const b = await backend(t, {
    deflate: false,
    onConnection (ws) {
      ws.once('message', () => { for (let i = 0; i < 400; i++) ws.send(Buffer.alloc(FRAME, i % 251)) })
    }
  })
  const logged: string[] = []
  const app = await buildApp(testConfig(t, { ROUTES_FILE: routesFile(t, [wsService(b.url)]) }), {
    logger: { level: 'info', stream: new Writable({ write (chunk, _enc, cb) { logged.push(chunk.toString()); cb() } }) }
  })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const client = await dial(`${url.replace('http:', 'ws:')}/chat`)
  let received = 0
  client.on('message', (data: Buffer) => {
    received += data.length
    if (received >= 16 * FRAME && client.readyState === WebSocket.OPEN) client.close(1000, 'enough')
  })
  const end = closed(client)
  client.send('go')
  t.equal((await end).code, 1000)
  const line = async (): Promise<Record<string, number> | undefined> => logged.map((l) => JSON.parse(l)).find((l) => l.msg === 'websocket closed')
  t.ok(await until(async () => await line() !== undefined, 10000), 'the tunnel\'s close line is written')
  const { bytes_out: out, bytes_in: into } = await line() as Record<string, number>
  t.equal(into, 2, 'bytes_in: the 2 bytes of "go"')
  t.ok(out <= received + 2 * FRAME, `bytes_out ${out} is at most what the client received (${received}) plus two frames in flight`)
  t.ok(out >= 16 * FRAME, `and at least what the client read before closing (${out})`)
})

t.test('a tunnel outlives the HTTP request and keep-alive timeouts', async (t) => {
  const b = await backend(t)
  const { ws: base } = await gateway(t, [wsService(b.url)], { HEADERS_TIMEOUT_MS: '200', REQUEST_TIMEOUT_MS: '300', KEEP_ALIVE_TIMEOUT_MS: '200' })
  const client = await dial(`${base}/chat`)
  let closedEarly = false
  client.once('close', () => { closedEarly = true })
  await new Promise((resolve) => setTimeout(resolve, 2500)) // well past all three, and past Node's 1 s connection check
  t.notOk(closedEarly, 'still open')
  client.send('later')
  t.equal((await nextMessage(client)).data.toString(), 'later')
  client.close()
})

t.test('closing the app sends 1001 to every open tunnel', async (t) => {
  const b = await backend(t)
  const { app, ws: base } = await gateway(t, [wsService(b.url)])
  const client = await dial(`${base}/chat`)
  const end = closed(client)
  await app.close()
  t.equal((await end).code, 1001)
})
