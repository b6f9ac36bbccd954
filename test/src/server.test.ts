// The gateway as operators run it: a real process, real sockets (SPEC §2, §4 streaming, §12).
import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { connect } from 'node:net'
import t from 'tap'
import { startBackend, slow, sse } from '../support/backends.js'
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

t.test('starts on the embedded store with no Redis and no .env, and answers /health', async (t) => {
  const gw = await startGateway(t, { env: { LOG_LEVEL: 'info' } })
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
  const total = 100 * 1024 * 1024
  let written = 0
  const backend = await startBackend((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
    const piece = Buffer.alloc(64 * 1024, 97)
    const pump = (): void => {
      while (written < total) {
        written += piece.length
        if (!res.write(piece)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  t.teardown(() => backend.close())
  const gw = await startGateway(t, { env: { USER_SERVICE_URL: backend.url, UPSTREAM_TIMEOUT_MS: '30000', REQUEST_TIMEOUT_MS: '60000', LOG_LEVEL: 'warn' } })
  const result = await new Promise<{ status: number, bytes: number, writtenWhilePaused: number }>((resolve, reject) => {
    request(`${gw.url}/api/users/big`, (res) => {
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
  t.equal(result.bytes, total)
  t.ok(result.writtenWhilePaused < 16 * 1024 * 1024, `backend wrote ${Math.round(result.writtenWhilePaused / 1048576)} MiB while the client was paused`)
})

t.test('server-sent events arrive one by one, before the stream ends', async (t) => {
  const backend = await startBackend(sse(5, 150))
  t.teardown(() => backend.close())
  const gw = await startGateway(t, { env: { USER_SERVICE_URL: backend.url, UPSTREAM_TIMEOUT_MS: '5000', LOG_LEVEL: 'warn' } })
  const arrivals: number[] = []
  const started = Date.now()
  const res = await get(`${gw.url}/api/users/events`, () => arrivals.push(Date.now() - started))
  t.equal(res.status, 200)
  t.ok(arrivals.length >= 3, `events arrived in ${arrivals.length} chunks`)
  t.ok(arrivals[arrivals.length - 1] - arrivals[0] >= 300, 'first event arrived well before the last (no buffering)')
})

t.test('Expect: 100-continue gets 100 Continue, then the proxied response', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const gw = await startGateway(t, { env: { USER_SERVICE_URL: backend.url, LOG_LEVEL: 'warn' } })
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
    socket.write('POST /api/users/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\n\r\n')
  })
  t.match(raw, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200/)
  t.equal(backend.hits, 1)
  t.notOk('expect' in backend.requests[0].headers, 'Expect is not forwarded')
  t.equal(backend.requests[0].body.toString(), 'hello')
})

t.test('SIGTERM drains: the in-flight request completes, new ones are refused, exit 0', async (t) => {
  const backend = await startBackend(slow(1500))
  t.teardown(() => backend.close())
  const gw = await startGateway(t, { env: { USER_SERVICE_URL: backend.url, UPSTREAM_TIMEOUT_MS: '5000', SHUTDOWN_TIMEOUT_MS: '8000', LOG_LEVEL: 'info' } })
  const inflight = get(`${gw.url}/api/users/slow`)
  await new Promise((resolve) => setTimeout(resolve, 400))
  gw.signal('SIGTERM')
  const exit = await gw.exited
  const res = await inflight
  t.equal(res.status, 200, 'in-flight request completed')
  t.ok(res.bytes > 0)
  t.equal(exit.code, 0)
  t.ok(gw.logs.some((l) => l.event === 'shutdown_complete'), 'logs shutdown_complete')
  const after = await fetch(`${gw.url}/health`).then((r) => r.status, () => 'refused')
  t.equal(after, 'refused')
})

t.test('a drain that outlasts SHUTDOWN_TIMEOUT_MS is cut short with exit 1', async (t) => {
  const backend = await startBackend(slow(10_000))
  t.teardown(() => backend.close())
  const gw = await startGateway(t, { env: { USER_SERVICE_URL: backend.url, UPSTREAM_TIMEOUT_MS: '20000', SHUTDOWN_TIMEOUT_MS: '800', LOG_LEVEL: 'info' } })
  const stuck = get(`${gw.url}/api/users/stuck`).catch(() => ({ status: 0 }))
  await new Promise((resolve) => setTimeout(resolve, 300))
  gw.signal('SIGTERM')
  const exit = await gw.exited
  await stuck
  t.equal(exit.code, 1)
  t.ok(gw.logs.some((l) => l.event === 'shutdown_timeout'), 'logs shutdown_timeout')
})

t.test('the port is free again after shutdown', async (t) => {
  const port = await freePort()
  const gw = await startGateway(t, { port, env: { LOG_LEVEL: 'warn' } })
  await gw.stop()
  const again = await startGateway(t, { port, env: { LOG_LEVEL: 'warn' } })
  t.equal((await fetch(`${again.url}/health`)).status, 200)
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
