// Bounded load for the long tier (docs/reliability.md, How the cases run): closed-loop workers over
// keep-alive connections (`hammer`) and an open-loop fixed-rate scheduler (`paced`). Every loop
// stops by itself at its deadline or request cap; accuracy is judged by counts at the upstream, not
// here.
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'

export interface Hit {
  status: number
  headers: IncomingHttpHeaders
  start: number
  end: number
  port: number
  /** Network error code (ECONNRESET, timeout, ...) when there was no response. */
  error?: string
  tag?: string
  /** Sent a second time on a fresh connection: the reused keep-alive one was reset first. */
  resent?: true
}

export interface RequestSpec {
  path: string
  method?: string
  headers?: Record<string, string>
  body?: string | Buffer
  /** Abort the request this many ms after sending the headers (a client going away). */
  abortAfterMs?: number
  tag?: string
}

export interface Sender {
  send (port: number, spec: RequestSpec, timeoutMs?: number): Promise<Hit>
  close (): void
}

/** One keep-alive agent per (port, source address). */
export function sender (opts: { maxSockets?: number, localAddress?: string, keepAlive?: boolean } = {}): Sender {
  const agents = new Map<string, Agent>()
  const agentFor = (port: number): Agent => {
    const k = `${port}`
    let a = agents.get(k)
    if (a === undefined) {
      a = new Agent({ keepAlive: opts.keepAlive ?? true, maxSockets: opts.maxSockets ?? 32, localAddress: opts.localAddress })
      agents.set(k, a)
    }
    return a
  }
  return {
    send (port, spec, timeoutMs = 10000) {
      const start = performance.now()
      return new Promise((resolve) => {
        let done = false
        const finish = (h: Omit<Hit, 'start' | 'end' | 'port'>): void => {
          if (done) return
          done = true
          resolve({ ...h, start, end: performance.now(), port, tag: spec.tag })
        }
        // A request written on a reused keep-alive connection just as the server closes it for
        // idleness is reset before the server read it: the HTTP/1.1 keep-alive race (RFC 9112
        // §9.3.1), which no server can prevent. Node's documented answer (request.reusedSocket) is
        // what well-behaved clients do: send it once more on a fresh connection. Only requests
        // without a body, only for a reset on a reused connection, only once; a gateway that reset
        // connections for real would reset the fresh one too, and that error is reported.
        const attempt = (resent: boolean): void => {
          const req = httpRequest({
            host: '127.0.0.1',
            port,
            path: spec.path,
            method: spec.method ?? 'GET',
            headers: spec.headers,
            agent: resent ? false : agentFor(port),
            localAddress: opts.localAddress,
            timeout: timeoutMs
          }, (res) => {
            const extra = resent ? { resent: true as const } : {}
            res.on('data', () => {})
            res.on('error', () => finish({ status: res.statusCode ?? 0, headers: res.headers, error: 'response aborted', ...extra }))
            res.on('end', () => finish({ status: res.statusCode ?? 0, headers: res.headers, ...extra }))
          })
          req.on('timeout', () => { req.destroy(); finish({ status: 0, headers: {}, error: 'timeout' }) })
          req.on('error', (e: NodeJS.ErrnoException) => {
            if (!resent && !done && req.reusedSocket && e.code === 'ECONNRESET' && spec.body === undefined && spec.abortAfterMs === undefined) {
              attempt(true)
              return
            }
            finish({ status: 0, headers: {}, error: e.code ?? e.message })
          })
          if (spec.abortAfterMs !== undefined) {
            req.flushHeaders()
            setTimeout(() => { req.destroy(); finish({ status: 0, headers: {}, error: 'aborted by client' }) }, spec.abortAfterMs)
            return
          }
          if (spec.body !== undefined) req.end(spec.body)
          else req.end()
        }
        attempt(false)
      })
    },
    close () {
      for (const a of agents.values()) a.destroy()
      agents.clear()
    }
  }
}

export interface HammerOptions {
  ports: number[]
  connections: number
  durationMs: number
  /** Hard cap on requests in all (default 200,000). */
  maxRequests?: number
  /** The i-th request (i counts from 0 over all workers). */
  request: (i: number) => RequestSpec
  onResponse?: (hit: Hit) => void
  localAddress?: string
}

/** Closed loop: `connections` workers, each sending its next request when the last one ends. */
export async function hammer (opts: HammerOptions): Promise<Hit[]> {
  const s = sender({ maxSockets: opts.connections, localAddress: opts.localAddress })
  const hits: Hit[] = []
  const deadline = Date.now() + opts.durationMs
  const cap = opts.maxRequests ?? 200_000
  let i = 0
  const worker = async (): Promise<void> => {
    while (Date.now() < deadline && i < cap) {
      const n = i++
      const port = opts.ports[n % opts.ports.length]
      const hit = await s.send(port, opts.request(n))
      hits.push(hit)
      opts.onResponse?.(hit)
    }
  }
  try {
    await Promise.all(Array.from({ length: opts.connections }, worker))
  } finally {
    s.close()
  }
  return hits
}

export interface PacedOptions {
  ports: number[]
  ratePerSec: number
  durationMs: number
  request: (i: number) => RequestSpec
  onResponse?: (hit: Hit) => void
  /** Requests not started because this many were already in flight (default 1000). */
  maxInFlight?: number
  timeoutMs?: number
  keepAlive?: boolean
}

export interface PacedResult { hits: Hit[], skipped: number, sent: number }

/** Open loop: starts requests at a fixed rate whatever the answers, up to a bounded in-flight count. */
export async function paced (opts: PacedOptions): Promise<PacedResult> {
  const s = sender({ maxSockets: 256, keepAlive: opts.keepAlive ?? true })
  const hits: Hit[] = []
  const pending = new Set<Promise<void>>()
  const maxInFlight = opts.maxInFlight ?? 1000
  const started = Date.now()
  const total = Math.floor(opts.ratePerSec * opts.durationMs / 1000)
  let skipped = 0
  let sent = 0
  try {
    for (let n = 0; n < total; n++) {
      const due = started + (n * 1000) / opts.ratePerSec
      const wait = due - Date.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      if (pending.size >= maxInFlight) { skipped++; continue }
      const port = opts.ports[n % opts.ports.length]
      sent++
      const p = s.send(port, opts.request(n), opts.timeoutMs).then((hit) => {
        hits.push(hit)
        opts.onResponse?.(hit)
      })
      pending.add(p)
      p.finally(() => pending.delete(p)).catch(() => {})
    }
    await Promise.all(pending)
  } finally {
    s.close()
  }
  return { hits, skipped, sent }
}

/** Least-squares slope of y over x. */
export function slope (xs: number[], ys: number[]): number {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) { num += (xs[i] - mx) * (ys[i] - my); den += (xs[i] - mx) ** 2 }
  return den === 0 ? 0 : num / den
}

export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
