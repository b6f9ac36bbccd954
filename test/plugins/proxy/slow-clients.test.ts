// Clients that hold what they were given (docs/reliability.md, BI-27, BI-28), over real sockets: a
// slow uploader answered 408 by the request timeout, and a client that stops reading a large
// response. Either way the gateway closes the connection, the concurrency slots and the breaker
// permit go back, the upstream request is aborted, and the request is counted once.
import type { ServerResponse } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../../../src/app.js'
import { routesFile, testConfig } from '../../support/app.js'
import { type Teardownable, until } from '../../support/basics.js'
import { http, metricValue, scrape } from '../../support/http.js'
import { service } from '../../support/suite.js'
import { recordingUpstream, type Upstream } from '../../support/upstreams.js'

/** A gateway in this process, so the test can watch its own end of each connection and its log lines. */
async function gateway (t: Teardownable, services: unknown[], env: Record<string, string> = {}) {
  const config = testConfig(t, {
    ROUTES_FILE: routesFile(t, services),
    RATE_LIMIT_BURST: '10000',
    // One backend failure would open the breaker: a client's ending must never count as one.
    CB_MAX_FAILURES: '1',
    ...env
  })
  const logs: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l !== '') logs.push(JSON.parse(l))
      done()
    }
  })
  const app = await buildApp(config, { logger: { level: 'info', stream } })
  t.teardown(async () => { await app.close() })
  const accepted: Socket[] = []
  app.server.on('connection', (s: Socket) => accepted.push(s))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  /** Access-log lines of requests under `prefix`. */
  const access = (prefix: string) => logs.filter((l) => typeof l.url === 'string' && l.url.startsWith(prefix) && typeof l.status === 'number')
  return { app, port, accepted, logs, access }
}

/** An upstream that answers 200 once a request's body has arrived whole; it counts open connections. */
async function okUpstream (t: Teardownable): Promise<Upstream & { open: () => number }> {
  const up = await recordingUpstream(t, (_req, res) => { res.end('{"ok":true}') })
  const sockets = new Set<Socket>()
  up.server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  return Object.assign(up, { open: () => sockets.size })
}

/** A client that never closes its side: it keeps its socket half-open after the server's FIN. */
interface Holder { socket: Socket, data: Buffer[], ended: boolean }
async function holder (t: Teardownable, port: number, bytes: string): Promise<Holder> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  const h: Holder = { socket, data: [], ended: false }
  socket.on('data', (d: Buffer) => h.data.push(d))
  socket.on('end', () => { h.ended = true })
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  socket.write(bytes)
  return h
}

const text = (h: Holder): string => Buffer.concat(h.data).toString('latin1')
const upload = (method: string, path: string): string =>
  `${method} ${path} HTTP/1.1\r\nHost: g\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n0123456789`
const SLOW = { HEADERS_TIMEOUT_MS: '1000', REQUEST_TIMEOUT_MS: '1000' }

t.test('BI-27 a slow upload answered 408 gives back its service slot, permit and backend connection', async (t) => {
  const up = await okUpstream(t)
  const { port, accepted, access } = await gateway(t, [service('slow', '/api/slow', up.url, { maxConcurrent: 3 })], SLOW)
  const clients = [
    await holder(t, port, upload('POST', '/api/slow/a')),
    await holder(t, port, upload('PUT', '/api/slow/b')),
    await holder(t, port, upload('POST', '/api/slow/c'))
  ]
  t.ok(await until(() => up.requests.length === 3, 5000), 'the three uploads reached the upstream and hold every slot')
  t.ok(await until(() => clients.every((c) => /^HTTP\/1\.1 408 /.test(text(c))), 10_000), 'each slow client is answered 408')
  t.ok(await until(() => accepted.every((s) => s.destroyed), 5000), 'the gateway closed every connection although no client closed its side')
  t.ok(clients.every((c) => !c.socket.destroyed), 'the clients still hold their sockets')

  const next = await http(port, '/api/slow/next')
  t.equal(next.status, 200, 'a following request to the service gets a slot')
  t.ok(await until(() => up.requests.slice(0, 3).every((r) => r.aborted), 5000), 'the three upstream requests were aborted')
  t.ok(await until(() => up.open() <= 1, 5000), `the backend connections of the uploads were closed (${up.open()} open)`)

  const m = await scrape(port)
  t.equal(metricValue(m, 'gateway_http_requests_total', { path: '/api/slow', status: '408' }), 3, 'each upload counted once, as 408')
  t.equal(metricValue(m, 'gateway_http_requests_total', { path: '/api/slow', status: '499' }), 0, 'and not as a client abort too')
  t.equal(metricValue(m, 'gateway_backend_errors_total', { service: 'slow' }), 0, 'no backend failure was recorded')
  t.equal(metricValue(m, 'gateway_circuit_breaker_state', { service: 'slow' }), 1, 'the breaker stayed closed')
  t.equal(metricValue(m, 'gateway_requests_in_flight'), 1, 'nothing is in flight but the scrape itself')
  const lines = access('/api/slow/').filter((l) => l.url !== '/api/slow/next')
  t.same(lines.map((l) => l.status), [408, 408, 408], 'one access-log line per upload, with the 408 it got')
  t.ok(lines.every((l) => l.aborted === undefined), 'none of them marked as a client that went away')
})

t.test('BI-27 slow uploads answered 408 give back the global MAX_CONCURRENT_REQUESTS slots', async (t) => {
  const up = await okUpstream(t)
  const other = await okUpstream(t)
  const { port, accepted } = await gateway(t, [service('slow', '/api/slow', up.url), service('other', '/api/other', other.url)],
    { ...SLOW, MAX_CONCURRENT_REQUESTS: '2' })
  const clients = [await holder(t, port, upload('PUT', '/api/slow/a')), await holder(t, port, upload('POST', '/api/slow/b'))]
  t.ok(await until(() => up.requests.length === 2, 5000), 'the two uploads hold both global slots')
  t.ok(await until(() => clients.every((c) => text(c).startsWith('HTTP/1.1 408 ')), 10_000), 'both are answered 408')
  t.ok(await until(() => accepted.every((s) => s.destroyed), 5000), 'and their connections closed by the gateway')
  const res = await http(port, '/api/other/x')
  t.equal(res.status, 200, 'another service is served: the global slots are free')
  t.ok(await until(() => up.requests.every((r) => r.aborted), 5000), 'the upstream requests were aborted')
})

t.test('BI-27 a slow upload waiting in the queue leaves it when answered 408', async (t) => {
  const held: ServerResponse[] = []
  const gate = await recordingUpstream(t, (_req, res) => { held.push(res) })
  const { port, accepted } = await gateway(t, [service('q', '/api/q', gate.url, { maxConcurrent: 1, queueTimeoutMs: 60_000 })], SLOW)
  const first = http(port, '/api/q/first', { timeoutMs: 30_000 })
  t.ok(await until(() => held.length === 1, 5000), 'the first request holds the only slot')
  // The queue holds at most maxConcurrent (1) waiters: the slow upload takes that place.
  const slow = await holder(t, port, upload('POST', '/api/q/slow'))
  t.ok(await until(() => text(slow).startsWith('HTTP/1.1 408 '), 10_000), 'the queued slow upload is answered 408')
  t.ok(await until(() => accepted.length === 2 && accepted[1].destroyed, 5000), 'and its connection closed by the gateway')
  // Were the upload still queued, the queue would be full and this one shed at once.
  const next = http(port, '/api/q/next', { timeoutMs: 30_000 })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(gate.requests.length, 1, 'the next request waits in the queue')
  for (const res of held.splice(0)) res.end('{"ok":true}')
  t.equal((await first).status, 200)
  t.ok(await until(() => held.length === 1, 5000), 'the freed slot goes to the next request')
  for (const res of held.splice(0)) res.end('{"ok":true}')
  t.equal((await next).status, 200, 'which succeeds')
  t.same(gate.requests.map((r) => r.url), ['/api/q/first', '/api/q/next'], 'the slow upload never reached the upstream')
})

t.test('BI-27 an upgrade answered without 101 closes its connection and gives back its slot', async (t) => {
  // The backend refuses the upgrade (403) and serves plain requests.
  const up = await recordingUpstream(t, (req, res) => {
    res.writeHead(req.headers.upgrade === undefined ? 200 : 403, { 'content-type': 'application/json' })
    res.end('{}')
  })
  const { port, accepted } = await gateway(t, [service('ws', '/api/ws', up.url, { websocket: true, maxConcurrent: 1 })])
  const client = await holder(t, port, 'GET /api/ws/chat HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  t.ok(await until(() => text(client).startsWith('HTTP/1.1 403 '), 5000), 'the refusal is relayed')
  t.ok(await until(() => accepted[0].destroyed, 5000), 'the gateway closed the connection although the client holds its side')
  const next = await http(port, '/api/ws/plain')
  t.equal(next.status, 200, 'the next request to the service gets the slot')
})

t.test('BI-28 a client that stops reading is cut after CLIENT_SEND_TIMEOUT_MS and its slot is free', async (t) => {
  const TOTAL = 50 * 1024 * 1024
  const piece = Buffer.alloc(64 * 1024, 97)
  const up = await recordingUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': TOTAL })
    let sent = 0
    const pump = (): void => {
      while (sent < TOTAL && !res.destroyed) {
        sent += piece.length
        if (!res.write(piece)) { res.once('drain', pump); return }
      }
      if (!res.destroyed) res.end()
    }
    pump()
  })
  const { port, accepted, logs, access } = await gateway(t, [service('big', '/api/big', up.url, { maxConcurrent: 1 })], { CLIENT_SEND_TIMEOUT_MS: '500' })
  const client = await holder(t, port, 'GET /api/big/file HTTP/1.1\r\nHost: g\r\n\r\n')
  t.ok(await until(() => text(client).startsWith('HTTP/1.1 200 '), 5000), 'the client got the head')
  client.socket.pause()

  t.ok(await until(() => up.requests.length === 1 && up.requests[0].aborted, 15_000), 'the upstream response was aborted')
  t.ok(await until(() => accepted[0].destroyed, 5000), 'the gateway closed the client connection')
  const next = await http(port, '/api/big/small', { method: 'HEAD' })
  t.equal(next.status, 200, 'the next request to the service gets its slot')

  const m = await scrape(port)
  t.equal(metricValue(m, 'gateway_http_requests_total', { path: '/api/big', method: 'GET', status: '499' }), 1, 'counted once as a client abort (499)')
  t.equal(metricValue(m, 'gateway_http_requests_total', { path: '/api/big', method: 'GET', status: '200' }), 0, 'and not as a 200')
  t.equal(metricValue(m, 'gateway_backend_errors_total', { service: 'big' }), 0, 'not a backend failure')
  t.equal(metricValue(m, 'gateway_circuit_breaker_state', { service: 'big' }), 1, 'the breaker stayed closed')
  const lines = access('/api/big/file')
  t.same(lines.map((l) => [l.status, l.aborted]), [[499, true]], 'one access-log line: 499, aborted')
  t.equal(logs.filter((l) => l.event === 'client_send_timeout').length, 1, 'and one line saying why')

  // Reading again, the client gets what was buffered and then the end: the body is cut short.
  client.socket.resume()
  t.ok(await until(() => client.ended, 15_000), 'the client sees the connection end')
  const all = Buffer.concat(client.data)
  const received = all.length - all.indexOf('\r\n\r\n') - 4
  t.ok(received < TOTAL, `the body was cut short (${received} of ${TOTAL} bytes)`)
})

t.test('BI-28 a client reading slowly but steadily is not cut', async (t) => {
  const TOTAL = 16 * 1024 * 1024
  const up = await recordingUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': TOTAL })
    res.end(Buffer.alloc(TOTAL, 98))
  })
  const { port } = await gateway(t, [service('steady', '/api/steady', up.url)], { CLIENT_SEND_TIMEOUT_MS: '1000' })
  const client = await holder(t, port, 'GET /api/steady/file HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  // Paused for less than the send timeout each time, many times over.
  const reader = setInterval(() => {
    client.socket.pause()
    setTimeout(() => client.socket.resume(), 300)
  }, 400)
  t.teardown(() => clearInterval(reader))
  t.ok(await until(() => client.ended, 60_000), 'the response ends')
  clearInterval(reader)
  const body = Buffer.concat(client.data)
  const headEnd = body.indexOf('\r\n\r\n')
  t.equal(body.length - headEnd - 4, TOTAL, 'the whole body arrived')
  t.equal(up.requests[0].aborted, false)
})
