// A small HTTP client for well-formed requests: a fresh connection each time (no pooling between
// tests), an optional source address so each test is its own client IP, never throws on status.
import { request as httpRequest, type Agent, type IncomingHttpHeaders } from 'node:http'
import { adminAuth } from './gateway-process.js'

export interface HttpResponse {
  status: number
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: string
  json: () => any
  /** ms from sending to the end of the body. */
  ms: number
}

export interface HttpOptions {
  method?: string
  headers?: Record<string, string | string[]>
  body?: string | Buffer
  localAddress?: string
  timeoutMs?: number
  /** A keep-alive agent, to send on connections already open; default: a new connection per request. */
  agent?: Agent
}

export async function http (port: number, path: string, opts: HttpOptions = {}): Promise<HttpResponse> {
  const started = performance.now()
  return await new Promise((resolve, reject) => {
    const headers = { ...(opts.headers ?? {}) }
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      method: opts.method ?? 'GET',
      headers,
      agent: opts.agent ?? false,
      localAddress: opts.localAddress,
      timeout: opts.timeoutMs ?? 10000
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body,
          json: () => JSON.parse(body),
          ms: performance.now() - started
        })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`request timeout after ${opts.timeoutMs ?? 10000} ms: ${opts.method ?? 'GET'} ${path}`)))
    req.on('error', reject)
    if (opts.body !== undefined) req.end(opts.body)
    else req.end()
  })
}

/** Source addresses 127.<a>.<b>.<c>, unique within this process, never 127.0.0.1. */
let ipCounter = 0
export function nextIp (): string {
  let n: number
  do {
    ipCounter++
    n = ipCounter + 256 // skip 127.0.0.x
  } while ((n & 255) === 0 || (n & 255) === 255)
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
}

export interface CreatedKey {
  id: string
  raw: string
  record: Record<string, unknown>
  response: HttpResponse
}

/** Creates an API key through the admin API; throws unless the answer is 201 with a raw key. */
export async function createKey (port: number, body: Record<string, unknown>, localAddress?: string): Promise<CreatedKey> {
  const res = await http(port, '/admin/apikeys', {
    method: 'POST',
    headers: { authorization: adminAuth(), 'content-type': 'application/json' },
    body: JSON.stringify(body),
    localAddress
  })
  if (res.status !== 201) throw new Error(`create key: ${res.status} ${res.body}`)
  const data = res.json().data
  return { id: data.api_key.id, raw: data.raw_key, record: data.api_key, response: res }
}

export async function admin (port: number, method: string, path: string, body?: unknown, localAddress?: string): Promise<HttpResponse> {
  return await http(port, path, {
    method,
    headers: body === undefined ? { authorization: adminAuth() } : { authorization: adminAuth(), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    localAddress
  })
}

/** Parses Prometheus text into `name{labels}` → value. */
export function parseMetrics (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^(\S+?(?:\{.*\})?)\s+(\S+)(?:\s+\d+)?$/.exec(line)
    if (m !== null) out.set(m[1], Number(m[2]))
  }
  return out
}

/** Sums every series of `name` whose labels include all of `labels`. */
export function metricValue (metrics: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const [series, v] of metrics) {
    const brace = series.indexOf('{')
    const n = brace < 0 ? series : series.slice(0, brace)
    if (n !== name) continue
    const ls = brace < 0 ? '' : series.slice(brace)
    if (Object.entries(labels).every(([k, val]) => ls.includes(`${k}="${val}"`))) sum += v
  }
  return sum
}

export async function scrape (port: number): Promise<Map<string, number>> {
  const res = await http(port, '/metrics')
  return parseMetrics(res.body)
}
