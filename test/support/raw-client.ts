// A client that writes exact bytes and reads until the server closes or a deadline, the way
// Envoy's sendRawHttpAndWaitForResponse and nginx-tests' http() work (docs/reliability.md, How the
// cases run). Two status lines for one request means smuggling; a close within 1 s of the last
// byte means "close".
import { connect, type Socket } from 'node:net'

export interface ParsedResponse {
  statusLine: string
  status: number
  /** Lower-case names; repeated fields keep every value. */
  headers: Record<string, string[]>
  rawHead: string
  body: Buffer
  /** False when the stream ended before the body did. */
  complete: boolean
}

export interface RawResult {
  /** Everything the server sent, as latin1 text. */
  raw: string
  bytes: Buffer
  /** Every status code found on an `HTTP/1.x NNN` line, interim ones included. */
  statuses: number[]
  responses: ParsedResponse[]
  /** The server closed (FIN or RST) before we gave up. */
  closed: boolean
  /** The server closed within 1 s of its last byte (or of our last write when it sent nothing). */
  closedWithin1s: boolean
  /** ms from the first byte written to the close, or null. */
  closedAfterMs: number | null
  /** Socket error text (e.g. ECONNRESET, ECONNREFUSED), if any. */
  error: string | null
}

const STATUS_LINE = /HTTP\/1\.[01] (\d{3})[^\r\n]*/g

/** Every `HTTP/1.x NNN` status found anywhere in the text. */
export function statusesIn (raw: string): number[] {
  return [...raw.matchAll(STATUS_LINE)].map((m) => Number(m[1]))
}

/**
 * Parses consecutive HTTP/1.1 responses. `headRequests` marks which responses (by index, interim
 * ones excluded) answer HEAD and so carry no body.
 */
export function parseResponses (buf: Buffer, headRequests: Set<number> = new Set()): ParsedResponse[] {
  const out: ParsedResponse[] = []
  let pos = 0
  let finals = 0
  while (pos < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', pos)
    if (headEnd < 0) {
      const rawHead = buf.subarray(pos).toString('latin1')
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(rawHead)
      if (m !== null) out.push({ statusLine: rawHead.split('\r\n')[0], status: Number(m[1]), headers: {}, rawHead, body: Buffer.alloc(0), complete: false })
      break
    }
    const rawHead = buf.subarray(pos, headEnd).toString('latin1')
    const lines = rawHead.split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0])
    if (m === null) break
    const status = Number(m[1])
    const headers: Record<string, string[]> = {}
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':')
      if (i <= 0) continue
      const name = line.slice(0, i).trim().toLowerCase()
      ;(headers[name] ??= []).push(line.slice(i + 1).trim())
    }
    let p = headEnd + 4
    const res: ParsedResponse = { statusLine: lines[0], status, headers, rawHead, body: Buffer.alloc(0), complete: true }
    out.push(res)
    if (status < 200) { pos = p; continue }
    const isHead = headRequests.has(finals)
    finals++
    if (isHead || status === 204 || status === 304) { pos = p; continue }
    const te = (headers['transfer-encoding'] ?? []).join(',').toLowerCase()
    const cl = headers['content-length']
    if (te.includes('chunked')) {
      const parts: Buffer[] = []
      let done = false
      for (;;) {
        const le = buf.indexOf('\r\n', p)
        if (le < 0) break
        const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16)
        if (Number.isNaN(size)) break
        if (size === 0) {
          const end = buf.indexOf('\r\n\r\n', le)
          if (end >= 0) { p = end + 4; done = true } else p = buf.length
          break
        }
        if (le + 2 + size + 2 > buf.length) { parts.push(buf.subarray(le + 2)); p = buf.length; break }
        parts.push(buf.subarray(le + 2, le + 2 + size))
        p = le + 2 + size + 2
      }
      res.body = Buffer.concat(parts)
      res.complete = done
      pos = done ? p : buf.length
    } else if (cl !== undefined) {
      const n = Number(cl[0])
      res.body = buf.subarray(p, Math.min(buf.length, p + n))
      res.complete = p + n <= buf.length
      pos = p + n
    } else {
      // Read-until-close body.
      res.body = buf.subarray(p)
      pos = buf.length
    }
  }
  return out
}

export interface ConnectOptions {
  host?: string
  /** Source address, so each test can be its own client IP (any 127.x.y.z works on Linux). */
  localAddress?: string
  connectTimeoutMs?: number
}

/** One TCP connection to the server; bytes in, bytes out, close observed. */
export class RawConnection {
  readonly socket: Socket
  private chunks: Buffer[] = []
  private waiters: Array<() => void> = []
  closed = false
  closedAt: number | null = null
  lastDataAt: number | null = null
  startedAt = Date.now()
  lastWriteAt: number | null = null
  error: string | null = null
  private headIdx = new Set<number>()
  private finalsWritten = 0

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', (d: Buffer) => { this.chunks.push(d); this.lastDataAt = Date.now(); this.wake() })
    socket.on('error', (e: NodeJS.ErrnoException) => { this.error = e.code ?? e.message })
    socket.on('close', () => { this.closed = true; this.closedAt = Date.now(); this.wake() })
    // The server may close while we are still writing; that is an answer, not a test failure.
    socket.on('end', () => { /* half-close from server */ })
  }

  static async open (port: number, opts: ConnectOptions = {}): Promise<RawConnection> {
    return await new Promise((resolve, reject) => {
      const socket = connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress, allowHalfOpen: false })
      const timer = setTimeout(() => { socket.destroy(); reject(new Error('connect timeout')) }, opts.connectTimeoutMs ?? 5000)
      socket.once('connect', () => { clearTimeout(timer); resolve(new RawConnection(socket)) })
      socket.once('error', (e) => { clearTimeout(timer); reject(e) })
    })
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private async changed (untilMs: number): Promise<boolean> {
    const left = untilMs - Date.now()
    if (left <= 0) return false
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), left)
      this.waiters.push(() => { clearTimeout(timer); resolve(true) })
    })
  }

  /** Marks the next final response as answering HEAD (no body). */
  expectHead (): void {
    this.headIdx.add(this.finalsWritten)
  }

  /** Writes bytes; resolves false when the socket is already gone. */
  async write (data: string | Buffer, opts: { head?: boolean } = {}): Promise<boolean> {
    if (opts.head === true) this.expectHead()
    this.finalsWritten++
    return await this.writeRaw(data)
  }

  /** Writes bytes that do not start a new request (body continuation). */
  async writeRaw (data: string | Buffer): Promise<boolean> {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return false
    this.lastWriteAt = Date.now()
    return await new Promise((resolve) => {
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, (err) => resolve(err == null))
    })
  }

  get bytes (): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0] ?? Buffer.alloc(0)
  }

  get raw (): string {
    return this.bytes.toString('latin1')
  }

  responses (): ParsedResponse[] {
    return parseResponses(this.bytes, this.headIdx)
  }

  finals (): ParsedResponse[] {
    return this.responses().filter((r) => r.status >= 200)
  }

  /** Waits until `n` complete final responses arrived, the server closed, or the timeout. */
  async waitForResponses (n = 1, timeoutMs = 3000): Promise<ParsedResponse[]> {
    const until = Date.now() + timeoutMs
    for (;;) {
      const finals = this.finals().filter((r) => r.complete)
      if (finals.length >= n || this.closed) return this.responses()
      if (!await this.changed(until)) return this.responses()
    }
  }

  /** Waits until any bytes arrived (e.g. an interim 100) or close, up to the timeout. */
  async waitForData (timeoutMs = 3000, minBytes = 1): Promise<boolean> {
    const until = Date.now() + timeoutMs
    for (;;) {
      if (this.bytes.length >= minBytes) return true
      if (this.closed) return false
      if (!await this.changed(until)) return false
    }
  }

  /** Waits for the server to close; true when it did within the timeout. */
  async waitForClose (timeoutMs = 1000): Promise<boolean> {
    const until = Date.now() + timeoutMs
    while (!this.closed) {
      if (!await this.changed(until)) break
    }
    return this.closed
  }

  result (): RawResult {
    const bytes = this.bytes
    const raw = bytes.toString('latin1')
    const ref = this.lastDataAt ?? this.lastWriteAt ?? this.startedAt
    return {
      raw,
      bytes,
      statuses: statusesIn(raw),
      responses: this.responses(),
      closed: this.closed,
      closedWithin1s: this.closed && this.closedAt !== null && this.closedAt - ref <= 1000,
      closedAfterMs: this.closedAt === null ? null : this.closedAt - this.startedAt,
      error: this.error
    }
  }

  destroy (): void {
    this.socket.destroy()
  }
}

export interface RawRequestOptions extends ConnectOptions {
  /** How long to wait for the first complete response (default 3000 ms). */
  deadlineMs?: number
  /** After the expected responses, how long to keep watching for a close or extra bytes (default 1000 ms). */
  settleMs?: number
  /** How many final responses to wait for before settling (default 1). */
  responses?: number
  /** The request is a HEAD (its response has no body). */
  head?: boolean
}

/**
 * Writes `data` on a fresh connection and reads the answer: waits for the expected responses,
 * then `settleMs` more to see whether the server closes or sends anything else (a smuggled second
 * response). Never throws for network errors: they are reported in the result.
 */
export async function rawRequest (port: number, data: string | Buffer | Array<string | Buffer>, opts: RawRequestOptions = {}): Promise<RawResult> {
  let conn: RawConnection
  try {
    conn = await RawConnection.open(port, opts)
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    return { raw: '', bytes: Buffer.alloc(0), statuses: [], responses: [], closed: true, closedWithin1s: true, closedAfterMs: 0, error: err.code ?? err.message }
  }
  try {
    const parts = Array.isArray(data) ? data : [data]
    let first = true
    for (const p of parts) {
      if (first) await conn.write(p, { head: opts.head })
      else await conn.writeRaw(p)
      first = false
    }
    await conn.waitForResponses(opts.responses ?? 1, opts.deadlineMs ?? 3000)
    // Watch a little longer: a close, or a second (smuggled) response.
    const settle = opts.settleMs ?? 1000
    const until = Date.now() + settle
    while (!conn.closed && Date.now() < until) {
      await conn.waitForClose(until - Date.now())
    }
    return conn.result()
  } finally {
    conn.destroy()
  }
}

/** Formats a request with CRLF line ends; `headers` are written verbatim, in order. */
export function httpMessage (requestLine: string, headers: Array<[string, string] | string>, body: string | Buffer = ''): Buffer {
  const head = [requestLine, ...headers.map((h) => typeof h === 'string' ? h : `${h[0]}: ${h[1]}`)].join('\r\n') + '\r\n\r\n'
  return Buffer.concat([Buffer.from(head, 'latin1'), typeof body === 'string' ? Buffer.from(body, 'latin1') : body])
}
