// Fault-injecting backends on port 0 (docs/reliability.md, How the cases run). Every one ignores
// the gateway's active health checks (path HEALTH_PATH): they are answered 200 and never recorded,
// so counts are exact.
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { freePort, tempDir, type Teardownable } from './basics.js'

/** healthPath of every service the tests configure. */
export const HEALTH_PATH = '/__gw_health'

export interface Recorded {
  method: string
  url: string
  httpVersion: string
  /** Raw header list as received: [name, value, name, value, ...]. */
  rawHeaders: string[]
  headers: IncomingMessage['headers']
  body: Buffer
  /** The request or its connection ended before the upstream finished answering. */
  aborted: boolean
  /** Received (ms since epoch). */
  at: number
  /** Remote port of the gateway's connection (tells connection reuse apart). */
  remotePort: number
}

export interface Upstream {
  readonly port: number
  readonly url: string
  /** Requests in arrival order (health checks excluded). */
  readonly requests: Recorded[]
  /** TCP connections accepted. */
  connections: number
  /** Parse errors the upstream's HTTP server saw (SC-11: a desynchronised connection). */
  readonly clientErrors: string[]
  close (): Promise<void>
}

type Handler = (req: IncomingMessage, res: ServerResponse, rec: Recorded, n: number) => void

function count (rawHeaders: string[], name: string): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === name) n++
  return n
}
export { count as countHeader }

/** Values of `name` (case-insensitive) in a raw header list. */
export function headerValues (rawHeaders: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === name.toLowerCase()) out.push(rawHeaders[i + 1])
  return out
}

async function listenHttp (server: Server, t: Teardownable | null, extra: Partial<Upstream> & { scheme?: string } = {}): Promise<Upstream & { server: Server }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const up = {
    server,
    port,
    url: `${extra.scheme ?? 'http'}://127.0.0.1:${port}`,
    requests: extra.requests ?? [],
    connections: 0,
    clientErrors: extra.clientErrors ?? [],
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  server.on('connection', () => { up.connections++ })
  t?.teardown(up.close)
  return up
}

/** An HTTP upstream that records every request fully, then calls `handler`. */
export async function recordingUpstream (t: Teardownable | null, handler: Handler, opts: { server?: Server, scheme?: string } = {}): Promise<Upstream & { server: Server }> {
  const requests: Recorded[] = []
  const clientErrors: string[] = []
  const server = opts.server ?? createHttpServer()
  server.keepAliveTimeout = 4000
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    clientErrors.push(err.code ?? err.message)
    socket.destroy()
  })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === HEALTH_PATH) {
      req.resume()
      res.end('ok')
      return
    }
    const rec: Recorded = {
      method: req.method ?? '',
      url: req.url ?? '',
      httpVersion: req.httpVersion,
      rawHeaders: req.rawHeaders,
      headers: req.headers,
      body: Buffer.alloc(0),
      aborted: false,
      at: Date.now(),
      remotePort: req.socket.remotePort ?? 0
    }
    requests.push(rec)
    const n = requests.length
    res.on('close', () => { if (!res.writableFinished) rec.aborted = true })
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('error', () => { rec.aborted = true })
    req.on('end', () => {
      rec.body = Buffer.concat(chunks)
      handler(req, res, rec, n)
    })
  })
  return await listenHttp(server, t, { requests, clientErrors, scheme: opts.scheme })
}

function echoBody (rec: Recorded): string {
  return JSON.stringify({ method: rec.method, url: rec.url, rawHeaders: rec.rawHeaders, bodyLength: rec.body.length })
}

/** 200 with a JSON echo of what arrived (method, url, raw headers, body length). */
export async function echoUpstream (t: Teardownable | null): Promise<Upstream> {
  return await recordingUpstream(t, (_req, res, rec) => {
    const payload = echoBody(rec)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
    res.end(rec.method === 'HEAD' ? undefined : payload)
  })
}

/** Answers after `ms` (or never when the gateway gives up first; `aborted` then records it). */
export async function slowUpstream (t: Teardownable | null, ms: number): Promise<Upstream> {
  const timers = new Set<NodeJS.Timeout>()
  const up = await recordingUpstream(t, (_req, res, rec) => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (!res.destroyed) res.end(echoBody(rec))
    }, ms)
    timers.add(timer)
    res.on('close', () => { clearTimeout(timer); timers.delete(timer) })
  })
  t?.teardown(() => { for (const x of timers) clearTimeout(x) })
  return up
}

export interface FlakyOptions {
  /** Retry-After value sent with every 5xx/429. */
  retryAfter?: string
  /** Status after the list is used up (default 200). */
  then?: number
}

/** Answers `statuses[n]` to the n-th request, then `then` (200); the list can be replaced. */
export async function flakyUpstream (t: Teardownable | null, statuses: number[], opts: FlakyOptions = {}): Promise<Upstream & { setStatuses: (s: number[], then?: number) => void }> {
  let list = statuses
  let then = opts.then ?? 200
  let offset = 0
  const up = await recordingUpstream(t, (_req, res, rec, n) => {
    const status = list[n - 1 - offset] ?? then
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (status >= 500 && opts.retryAfter !== undefined) headers['retry-after'] = opts.retryAfter
    res.writeHead(status, headers)
    res.end(JSON.stringify({ n, status, url: rec.url }))
  })
  return Object.assign(up, {
    setStatuses (s: number[], th = 200) { list = s; then = th; offset = up.requests.length }
  })
}

/** Reads the request, then sends a TCP RST before any response byte. */
export async function resetBeforeHeadersUpstream (t: Teardownable | null): Promise<Upstream> {
  return await recordingUpstream(t, (req) => {
    req.socket.resetAndDestroy()
  })
}

/** A raw TCP upstream: parses each request head (+ Content-Length body) and lets `respond` write. */
export interface RawUpstream extends Upstream {
  /** Sockets the peer (the gateway) half-closed. */
  readonly peerClosed: number
  readonly sockets: Set<Socket>
  /** Remote ports of connections that are closed now (compare with Recorded.remotePort). */
  readonly closedPorts: Set<number>
}

export type RawResponder = (socket: Socket, head: string, rec: Recorded) => void

export async function rawUpstream (t: Teardownable | null, respond: RawResponder): Promise<RawUpstream> {
  const requests: Recorded[] = []
  const sockets = new Set<Socket>()
  const closedPorts = new Set<number>()
  const state = { peerClosed: 0, connections: 0 }
  const server: NetServer = createNetServer((socket) => {
    state.connections++
    sockets.add(socket)
    const remotePort = socket.remotePort ?? 0
    let buf = Buffer.alloc(0)
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket); closedPorts.add(remotePort) })
    socket.on('end', () => { state.peerClosed++ })
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.subarray(0, end).toString('latin1')
        const lines = head.split('\r\n')
        const [method, url, version] = lines[0].split(' ')
        const rawHeaders: string[] = []
        const headers: Record<string, string> = {}
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':')
          if (i <= 0) continue
          const name = line.slice(0, i).trim()
          const value = line.slice(i + 1).trim()
          rawHeaders.push(name, value)
          headers[name.toLowerCase()] = value
        }
        const cl = Number(headers['content-length'] ?? 0)
        if (buf.length < end + 4 + cl) return
        const body = buf.subarray(end + 4, end + 4 + cl)
        buf = buf.subarray(end + 4 + cl)
        if (url === HEALTH_PATH) {
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
          continue
        }
        const rec: Recorded = {
          method,
          url,
          httpVersion: (version ?? '').replace('HTTP/', ''),
          rawHeaders,
          headers,
          body,
          aborted: false,
          at: Date.now(),
          remotePort: socket.remotePort ?? 0
        }
        requests.push(rec)
        respond(socket, head, rec)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const up: RawUpstream = {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    get connections () { return state.connections },
    set connections (v: number) { state.connections = v },
    clientErrors: [],
    get peerClosed () { return state.peerClosed },
    sockets,
    closedPorts,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  t?.teardown(up.close)
  return up
}

/** FT-05: `200`, `Content-Length: 100`, 7 body bytes, then a TCP RST. */
export async function resetMidBodyUpstream (t: Teardownable | null): Promise<RawUpstream> {
  return await rawUpstream(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n1234567', () => {
      setTimeout(() => socket.resetAndDestroy(), 50)
    })
  })
}

/** FT-08: malformed responses, chosen by the last path segment of the request. */
export const MALFORMED: Record<string, string> = {
  'cl-te': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nEVILX\r\n0\r\n\r\n',
  'two-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\nEVIL_BODY',
  'status-2000': 'HTTP/1.1 2000 OK\r\nContent-Length: 4\r\n\r\nEVIL',
  'bare-cr': 'HTTP/1.1 200 OK\r\nX-Evil: a\rX-Injected: 1\r\nContent-Length: 4\r\n\r\nEVIL',
  'long-body': 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nGOODEVIL_EXTRA_BYTES',
  'many-headers': 'HTTP/1.1 200 OK\r\n' + Array.from({ length: 1000 }, (_, i) => `X-Evil-${i}: v\r\n`).join('') + 'Content-Length: 4\r\n\r\nEVIL'
}

export async function malformedUpstream (t: Teardownable | null): Promise<RawUpstream> {
  return await rawUpstream(t, (socket, _head, rec) => {
    const variant = rec.url.split('/').filter(Boolean).pop() ?? ''
    socket.write(MALFORMED[variant] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
  })
}

/** BI-20: a response carrying hop-by-hop headers. */
export async function hopByHopUpstream (t: Teardownable | null): Promise<RawUpstream> {
  return await rawUpstream(t, (socket) => {
    socket.write([
      'HTTP/1.1 200 OK',
      'Connection: X-Hop',
      'X-Hop: secret',
      'Keep-Alive: timeout=5, max=77',
      'Proxy-Connection: x',
      'Upgrade: h2c',
      'Trailer: Expires',
      'X-End-To-End: kept',
      'Content-Type: text/plain',
      'Content-Length: 2',
      '',
      'ok'
    ].join('\r\n'))
  })
}

/** A port where nothing listens (connection refused). */
export async function refusedPort (): Promise<{ port: number, url: string }> {
  const port = await freePort()
  return { port, url: `http://127.0.0.1:${port}` }
}

/** Accepts TCP connections and never reads or answers them. */
export async function blackHoleUpstream (t: Teardownable | null): Promise<{ port: number, url: string, connections: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const state = { connections: 0 }
  const server = createNetServer({ pauseOnConnect: true }, (socket) => {
    state.connections++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const up = {
    port,
    url: `http://127.0.0.1:${port}`,
    get connections () { return state.connections },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  t?.teardown(up.close)
  return up
}

export interface SelfSigned { dir: string, certFile: string, keyFile: string, cert: Buffer, key: Buffer }

/** A self-signed certificate for 127.0.0.1, made now with `openssl req -x509`. */
export function makeSelfSigned (t: Teardownable | null): SelfSigned {
  const dir = tempDir(null, 'gw-tls-')
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' })
  t?.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return { dir, certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) }
}

/** SC-10: an HTTPS echo upstream with the given (self-signed) certificate. */
export async function tlsUpstream (t: Teardownable | null, cert: SelfSigned): Promise<Upstream> {
  const server = createHttpsServer({ cert: cert.cert, key: cert.key }) as unknown as Server
  return await recordingUpstream(t, (_req, res, rec) => {
    const payload = echoBody(rec)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
    res.end(payload)
  }, { server, scheme: 'https' })
}
