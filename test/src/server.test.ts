// The gateway as operators run it: a real process, real sockets (docs/configuration.md, docs/proxying.md#bodies, docs/operations.md#shutdown).
import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { connect } from 'node:net'
import t from 'tap'
import { startBackend, sse } from '../support/backends.js'
import { NODE_BIN, SERVER_JS, startGateway } from '../support/gateway-process.js'
import { REDIS_URL, cleanRedis, uniquePrefix } from '../support/app.js'
import { freePort, tempDir } from '../support/basics.js'

function get (url: string, onBody?: (chunk: Buffer) => void): Promise<{ status: number, bytes: number, headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let bytes = 0
      res.on('data', (c: Buffer) => { bytes += c.length; onBody?.(c) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, headers: res.headers }))
      res.on('error', reject)
    }).on('error', reject).end()
  })
}

// One gateway process serves the tests that only need a running gateway, each through its own
// service and backend; the last test stops it and starts another on the same port.
let written = 0
const DOWNLOAD_BYTES = 100 * 1024 * 1024
const download = await startBackend((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': DOWNLOAD_BYTES })
  const piece = Buffer.alloc(64 * 1024, 97)
  const pump = (): void => {
    while (written < DOWNLOAD_BYTES) {
      written += piece.length
      if (!res.write(piece)) { res.once('drain', pump); return }
    }
    res.end()
  }
  pump()
})
t.teardown(() => download.close())
const events = await startBackend(sse(5, 150))
t.teardown(() => events.close())
const echo = await startBackend()
t.teardown(() => echo.close())
const gw = await startGateway(t, {
  services: [
    { name: 'download', prefix: '/api/download', backends: [{ url: download.url }] },
    { name: 'events', prefix: '/api/events', backends: [{ url: events.url }] },
    { name: 'echo', prefix: '/api/echo', backends: [{ url: echo.url }] }
  ],
  env: { UPSTREAM_TIMEOUT_MS: '30000', REQUEST_TIMEOUT_MS: '60000', LOG_LEVEL: 'info' }
})

t.test('starts on the embedded store with no Redis and no .env, and answers /health', async (t) => {
  const res = await fetch(`${gw.url}/health`)
  t.equal(res.status, 200)
  t.equal((await res.json() as { status: string }).status, 'ok')
  const ready = await fetch(`${gw.url}/ready`)
  t.equal(ready.status, 200)
})

t.test('invalid configuration exits 1 with one line per problem naming the variable', async (t) => {
  const cwd = tempDir(t, 'gw-bad-')
  const child = spawn(NODE_BIN, [SERVER_JS], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: 'eighty', RATE_LIMIT_BURST: '0', ADMIN_PASSWORD: '' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  t.equal(code, 1)
  const lines = stderr.trim().split('\n')
  t.ok(lines.some((l) => l.includes('PORT')), 'names PORT')
  t.ok(lines.some((l) => l.includes('RATE_LIMIT_BURST')), 'names RATE_LIMIT_BURST')
  t.ok(lines.some((l) => l.includes('ADMIN_PASSWORD')), 'names ADMIN_PASSWORD')
  t.notMatch(stderr, /at .*\.js:\d+/, 'no stack trace')
})

t.test('an invalid TRUST_PROXY entry exits 1 with a config error line, not a stack trace', async (t) => {
  const cwd = tempDir(t, 'gw-bad-')
  const child = spawn(NODE_BIN, [SERVER_JS], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(await freePort()), ADMIN_PASSWORD: 'pw', TRUST_PROXY: '1.2.3.4/99,cafe' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  t.equal(code, 1)
  t.match(stderr, /^config error: TRUST_PROXY: .*1\.2\.3\.4\/99.*cafe/m)
  t.notMatch(stderr, /at .*\.js:\d+/, 'no stack trace')
})

t.test('a 100 MB download streams through without being buffered', async (t) => {
  const result = await new Promise<{ status: number, bytes: number, writtenWhilePaused: number }>((resolve, reject) => {
    request(`${gw.url}/api/download/big`, (res) => {
      let bytes = 0
      let writtenWhilePaused = -1
      res.once('data', () => {
        // A client that stops reading must stop the backend too (backpressure end to end).
        res.pause()
        setTimeout(() => { writtenWhilePaused = written; res.resume() }, 1500)
      })
      res.on('data', (c: Buffer) => { bytes += c.length })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, writtenWhilePaused }))
      res.on('error', reject)
    }).on('error', reject).end()
  })
  t.equal(result.status, 200)
  t.equal(result.bytes, DOWNLOAD_BYTES)
  t.ok(result.writtenWhilePaused < 16 * 1024 * 1024, `backend wrote ${Math.round(result.writtenWhilePaused / 1048576)} MiB while the client was paused`)
})

t.test('server-sent events arrive one by one, before the stream ends', async (t) => {
  const arrivals: number[] = []
  const started = Date.now()
  const res = await get(`${gw.url}/api/events/stream`, () => arrivals.push(Date.now() - started))
  t.equal(res.status, 200)
  t.ok(arrivals.length >= 3, `events arrived in ${arrivals.length} chunks`)
  t.ok(arrivals[arrivals.length - 1] - arrivals[0] >= 300, 'first event arrived well before the last (no buffering)')
})

t.test('Expect: 100-continue gets 100 Continue, then the proxied response', async (t) => {
  const before = echo.hits
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(gw.port, '127.0.0.1')
    let data = ''
    socket.on('data', (d) => {
      // The body is sent only after the interim response, as a real client would.
      if (data === '' && d.toString().startsWith('HTTP/1.1 100')) socket.write('hello')
      data += d.toString()
      if (data.includes('"body":"hello"')) { socket.end(); resolve(data) }
    })
    socket.on('error', reject)
    setTimeout(() => { socket.destroy(); resolve(data) }, 5000)
    socket.write('POST /api/echo/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\n\r\n')
  })
  t.match(raw, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200/)
  t.equal(echo.hits, before + 1)
  t.notOk('expect' in echo.requests[before].headers, 'Expect is not forwarded')
  t.equal(echo.requests[before].body.toString(), 'hello')
})

t.test('WORKERS=2 on Redis: two worker processes share the port and stop together on SIGTERM', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const prefix = uniquePrefix()
  t.teardown(() => cleanRedis(prefix))
  const gw = await startGateway(t, {
    env: {
      WORKERS: '2',
      STORAGE: 'redis',
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      USER_SERVICE_URL: backend.url,
      LOG_LEVEL: 'info'
    }
  })
  // Each worker logs its own start; both serve the one port.
  for (let i = 0; i < 20; i++) t.equal((await fetch(`${gw.url}/api/users/${i}`)).status, 200)
  // /health answers once the first worker listens; the second may still be starting.
  const listening = () => new Set(gw.logs.filter((l) => l.event === 'gateway_started').map((l) => l.pid))
  for (let waited = 0; listening().size < 2 && waited < 10_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
  const pids = listening()
  t.equal(pids.size, 2, 'two workers listening')
  t.notOk(pids.has(gw.pid), 'the primary does not serve')
  gw.signal('SIGTERM')
  const exit = await gw.exited
  t.equal(exit.code, 0)
})

// Last: it stops the shared gateway.
t.test('the port is free again after shutdown', async (t) => {
  t.equal((await gw.stop()).code, 0, 'the shared gateway stops cleanly')
  const again = await startGateway(t, { port: gw.port, env: { LOG_LEVEL: 'warn' } })
  t.equal((await fetch(`${again.url}/health`)).status, 200)
})
