// One JSON access line per request (SPEC §12), replacing Fastify's two request/response lines
// (the app sets `disableRequestLogging`). Credentials never reach it: headers are not logged at
// all, key-like query parameters and anything shaped like a gateway key are redacted from the URL.
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { API_KEY_PREFIX } from '../src/api-key-format.js'
import { decodeEscapes } from '../src/percent-decode.js'
import { routeLabel, type RequestEnd } from './request-end.js'

export const REDACTED = '[REDACTED]'
/** Query parameters whose value is a credential (compared case-insensitively, after decoding). */
export const SECRET_PARAMS: ReadonlySet<string> = new Set([
  'apikey', 'api_key', 'api-key', 'x-api-key', 'key', 'token', 'access_token', 'refresh_token',
  'id_token', 'client_secret', 'password', 'secret', 'auth', 'authorization', 'signature', 'sig'
])
/** Longer URLs are cut: a log line is not the place for an 8 KB query string. */
export const MAX_LOGGED_URL = 2048

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
// A raw gateway key anywhere in the URL (a path segment, an oddly named parameter).
const KEY_SHAPE = new RegExp(escapeRe(API_KEY_PREFIX) + '[A-Za-z0-9_-]{16,}', 'g')

/** The URL as it may be logged: secret parameters' values and key-shaped strings replaced. */
export function redactUrl (url: string): string {
  let out = url
  const q = url.indexOf('?')
  if (q !== -1) {
    const parts = url.slice(q + 1).split('&')
    for (let i = 0; i < parts.length; i++) {
      const eq = parts[i].indexOf('=')
      const rawName = eq === -1 ? parts[i] : parts[i].slice(0, eq)
      if (SECRET_PARAMS.has(decodeName(rawName))) parts[i] = rawName + '=' + REDACTED
    }
    out = url.slice(0, q + 1) + parts.join('&')
  }
  if (out.includes('%')) out = out.split(URL_DELIMITERS).map(redactEncoded).join('')
  else if (out.includes(API_KEY_PREFIX)) out = out.replace(KEY_SHAPE, API_KEY_PREFIX + REDACTED)
  return out.length > MAX_LOGGED_URL ? out.slice(0, MAX_LOGGED_URL) + '…' : out
}

// Path segments and query names/values, each checked on its own; the delimiters are kept.
const URL_DELIMITERS = /([/?&=;#,])/

/**
 * A key can hide behind percent-escapes (`gw%5F…`, `%67%77_…`, even `gw%255F…` for a backend that
 * decodes twice): a piece whose decoded form holds a key shape is logged decoded and redacted;
 * any other piece is logged as sent.
 */
function redactEncoded (piece: string): string {
  const decoded = decodeEscapes(piece)
  if (!decoded.includes(API_KEY_PREFIX)) return piece
  const redacted = decoded.replace(KEY_SHAPE, API_KEY_PREFIX + REDACTED)
  return redacted === decoded ? piece : redacted
}

function decodeName (name: string): string {
  let n = name.replace(/\+/g, ' ')
  if (n.includes('%')) {
    try {
      n = decodeURIComponent(n)
    } catch {
      // A malformed escape is logged as sent (its value may still be secret: redact on raw name too).
    }
  }
  return n.trim().toLowerCase()
}

/** pino `req` serializer for the app's logger: Fastify's default one logs `req.url` with its
 *  query string, keys included (docs/reliability.md, SC-01). */
export function requestSerializer (request: FastifyRequest): Record<string, unknown> {
  return { method: request.method, url: redactUrl(request.url), host: request.host, remoteAddress: request.ip }
}

function line (request: FastifyRequest, end: RequestEnd) {
  // Both fields are declared by their plugins (api-keys, proxy); `?.` keeps other apps safe.
  const consumer = request.consumer
  const retries = request.proxyRetries
  const entry: Record<string, unknown> = {
    method: request.method,
    route: routeLabel(request),
    url: redactUrl(request.url),
    status: end.status,
    duration_ms: Math.round(end.durationMs * 1000) / 1000,
    ip: request.ip,
    consumer: consumer?.id ?? null,
    outcome: end.outcome
  }
  if (retries !== undefined && retries > 0) entry.retries = retries
  if (end.outcome === 'client_gone') entry.aborted = true
  return entry
}

/** Routes that load balancers probe and Prometheus scrapes every few seconds: logged at debug. */
export const PROBE_ROUTES: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics'])

export default fp(async function accessLog (fastify) {
  // Levels are fixed for the app's lifetime (LOG_LEVEL), so they are read once; building a line
  // (URL redaction, an object) is skipped when its level would drop it.
  const enabled = (level: string): boolean => (fastify.log as FastifyBaseLogger & { isLevelEnabled?: (l: string) => boolean }).isLevelEnabled?.(level) ?? true
  const infoEnabled = enabled('info')
  // LOG_PROBES=true logs probes and scrapes like any request; otherwise only at LOG_LEVEL=debug.
  const logProbes = fastify.config.logProbes
  const probesEnabled = logProbes ? infoEnabled : enabled('debug')
  if (!infoEnabled && !probesEnabled) return
  fastify.requestEnds.subscribe(function logEnd (request, end) {
    // A tunnel's own line comes when it closes (plugins/websocket/): its upgrade is not logged twice.
    if (end.outcome === 'upgraded') return
    const msg = end.outcome === 'client_gone' ? 'request aborted' : 'request completed'
    if (!PROBE_ROUTES.has(request.routeOptions?.url as string)) {
      if (infoEnabled) request.log.info(line(request, end), msg)
    } else if (probesEnabled) {
      if (logProbes) request.log.info(line(request, end), msg)
      else request.log.debug(line(request, end), msg)
    }
  })
}, { name: 'access-log', fastify: '5.x', dependencies: ['config', 'request-end'] })
