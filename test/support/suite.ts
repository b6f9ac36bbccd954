// Shared pieces of the reliability suites (docs/reliability.md): service
// entries for a ROUTES_FILE, raw-request assertions, log scanning.
import type { GatewayProcess, LogLine, ServiceSpec } from './gateway-process.js'
import { nextIp } from './http.js'
import { rawRequest, type RawRequestOptions, type RawResult } from './raw-client.js'
import { HEALTH_PATH } from './upstreams.js'

/** A service entry for ROUTES_FILE; health checks go to HEALTH_PATH, which upstreams ignore. */
export function service (name: string, prefix: string, url: string | string[], extra: Record<string, unknown> = {}): ServiceSpec {
  const urls = Array.isArray(url) ? url : [url]
  return { name, prefix, backends: urls.map((u) => ({ url: u })), healthPath: HEALTH_PATH, ...extra }
}

/** Raw bytes from a fresh client address (its own rate-limit bucket and admin throttle). */
export async function send (gw: GatewayProcess, bytes: string | Buffer | Array<string | Buffer>, opts: RawRequestOptions = {}): Promise<RawResult> {
  return await rawRequest(gw.port, bytes, { localAddress: nextIp(), ...opts })
}

/** Minimal tap surface used here (tap's Test satisfies it). */
export interface Asserts {
  equal: (...args: any[]) => unknown
  ok: (...args: any[]) => unknown
}

/**
 * The "rejected" verdict of docs/reliability.md: exactly one status line, one of `allowed`, and the
 * connection closed within 1 s.
 */
export function assertRejectedAndClosed (t: Asserts, res: RawResult, allowed: number[], label: string): void {
  t.equal(res.statuses.length, 1, `${label}: exactly one status line (got [${res.statuses.join(', ')}]${res.error !== null ? ', ' + res.error : ''})`)
  t.ok(allowed.includes(res.statuses[0]), `${label}: status ${res.statuses[0]} is one of ${allowed.join('/')}`)
  t.ok(res.closedWithin1s, `${label}: connection closed within 1 s of the response`)
}

/** Log lines at or above `level` (pino numbers: 30 info, 40 warn, 50 error). */
export function logsAtLeast (gw: GatewayProcess, level: number, since = 0): LogLine[] {
  return gw.logs.slice(since).filter((l) => typeof l.level === 'number' && l.level >= level)
}

/** Every place a secret could show up in text: raw, base64, base64url, URL-encoded. */
export function secretForms (secret: string): string[] {
  const forms = new Set([secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url'), encodeURIComponent(secret)])
  return [...forms].filter((f) => f.length >= 8)
}

/** Body must be the docs/admin-api.md#api-keys error envelope. */
export function isEnvelope (body: string): boolean {
  try {
    const j = JSON.parse(body)
    return j.status === 'error' && typeof j.error === 'string' && typeof j.message === 'string'
  } catch {
    return false
  }
}

/** Text that must never reach a client in an error body (SC-09). */
export const LEAK_PATTERNS: RegExp[] = [
  /\bat \S+ \(/, // stack frame
  /\.(?:js|ts|mjs|cjs):\d+/, // file:line
  /\bE[A-Z]{3,}\b/, // errno names (ECONNREFUSED, ETIMEDOUT, ...)
  /\b127\.0\.0\.1:\d+/, // ip:port
  /\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d{2,5}\b/,
  /node_modules|\/work\/|\/tmp\//,
  /redis|sqlite|ioredis|undici|opossum|HPE_|FST_/i
]

export function leaks (text: string): string[] {
  return LEAK_PATTERNS.filter((p) => p.test(text)).map(String)
}
