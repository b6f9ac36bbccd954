// WebSocket tunnels and shutdown (docs/operations.md, docs/proxying.md#websockets): a real gateway process (compiled, `npm run build`
// first), a real ws backend and client. SIGTERM starts the drain: the client gets close 1001 and
// the process exits 0; the access log has one line for the tunnel.
import { connect, type Socket } from 'node:net'
import t from 'tap'
import WebSocket from 'ws'
import { listen, routesFile } from '../../support/app.js'
import { until } from '../../support/basics.js'
import { startGateway } from '../../support/gateway-process.js'
import { service } from '../../support/suite.js'
import { startWsBackend } from '../../support/ws-backend.js'

t.test('SIGTERM sends close 1001 to an open tunnel, logs the tunnel once and exits 0', async (t) => {
  const b = await startWsBackend()
  t.teardown(() => b.close())
  const gw = await startGateway(t, { services: [service('chat', '/chat', b.url, { websocket: true })] })
  const client = new WebSocket(`ws://127.0.0.1:${gw.port}/chat/room`)
  await new Promise((resolve, reject) => { client.once('open', resolve); client.once('error', reject) })
  client.send('hello')
  await new Promise((resolve) => client.once('message', resolve))
  const end = new Promise<{ code: number, reason: string }>((resolve) => client.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })))
  gw.signal('SIGTERM')
  const { code, reason } = await end
  t.equal(code, 1001, 'the client is told the gateway is going away')
  t.equal(reason, 'gateway shutting down')
  t.equal((await gw.exited).code, 0, 'the drain completes: exit 0')
  const lines = gw.logs.filter((l) => l.msg === 'websocket closed')
  t.equal(lines.length, 1, 'one access-log line for the tunnel')
  t.match(lines[0], { status: 101, route: '/chat', url: '/chat/room', websocket: true, bytes_in: 5, bytes_out: 5, close_code: 1001, closed_by: 'gateway' })
  t.type(lines[0].duration_ms, 'number')
  t.equal(gw.logs.filter((l) => (l.msg === 'request completed' || l.msg === 'request aborted') && String(l.url).startsWith('/chat')).length, 0, 'and no other line for the upgrade request')
})

/** Opens a tunnel by hand and then never answers anything (a client that ignores close frames). */
async function deafClient (port: number): Promise<{ socket: Socket, received: () => Buffer, ended: Promise<void> }> {
  const socket = connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write('GET /chat HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  const received = () => Buffer.concat(chunks)
  if (!await until(() => received().includes('\r\n\r\n'), 5000)) throw new Error('no handshake answer')
  return { socket, received, ended }
}

t.test('a tunnel whose client ignores the close frame is cut at SHUTDOWN_TIMEOUT_MS', async (t) => {
  const b = await startWsBackend()
  t.teardown(() => b.close())
  const { app, url } = await listen(t, { ROUTES_FILE: routesFile(t, [service('chat', '/chat', b.url, { websocket: true })]), SHUTDOWN_TIMEOUT_MS: '300' })
  const deaf = await deafClient(Number(new URL(url).port))
  t.match(deaf.received().toString('latin1'), /^HTTP\/1\.1 101 /)
  const started = Date.now()
  await app.close()
  await deaf.ended
  // ws alone would wait 30 s for the close frame to be answered.
  t.ok(Date.now() - started < 10_000, 'cut at the shutdown timeout, not after ws\'s own 30 s')
  const frames = deaf.received().subarray(deaf.received().indexOf('\r\n\r\n') + 4)
  t.equal(frames[0], 0x88, 'a close frame was sent first')
  t.equal(frames.readUInt16BE(2), 1001, 'with code 1001')
  t.equal(app.websocketTunnels.size, 0, 'no tunnel is left')
})
