// The header policy (docs/proxying.md), applied in one place for each direction.
//
// To a backend: hop-by-hop fields (RFC 9110 §7.6.1) and the ones `Connection` names are dropped;
// gateway credentials (X-API-Key, a gateway Bearer token) and `Proxy-Authorization` (for this hop
// only) never leave; client-sent identity and forwarding fields are replaced by the gateway's own
// (X-Consumer-*, X-Forwarded-*, X-Real-IP, X-Request-Id); a client's `Forwarded` is removed so it
// cannot disagree with the X-Forwarded-For the gateway writes.
// To the client: hop-by-hop fields and the backend's own rate-limit fields (the limit a client hits
// is the gateway's) are dropped, and the gateway's fields (request id, rate limit, CORS) added.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { isGatewayBearer } from './credentials.js'
import type { HeaderTransform } from './header-rules.js'

export type UpstreamHeaders = Record<string, string | string[]>

/** Never copied from the client: hop-by-hop, this hop's credentials, or rewritten by the gateway. */
const REQUEST_DROP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy', 'upgrade', 'http2-settings', 'expect',
  'transfer-encoding', 'te', 'trailer', 'proxy-authorization', 'host',
  'x-api-key',
  'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'x-request-id',
  // Written per attempt by the tracing plugin: the gateway's span is the backend's parent (docs/tracing.md).
  'traceparent', 'tracestate'
])

const RESPONSE_DROP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'http2-settings', 'trailer',
  'transfer-encoding', 'te',
  'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit', 'ratelimit-policy'
])

/** Lowercased names listed in a `Connection` field (RFC 9110 §7.6.1), or null. */
function connectionListed (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined || value === 'keep-alive' || value === 'close') return null
  const names = new Set<string>()
  for (const token of String(value).split(',')) {
    const name = token.trim().toLowerCase()
    if (name !== '' && name !== 'close' && name !== 'keep-alive') names.add(name)
  }
  return names.size === 0 ? null : names
}

/** Most header fields a request or response may have: Envoy's default; Node's own limit (2000) truncates silently instead of rejecting. */
export const MAX_HEADER_COUNT = 100

/**
 * The headers of every attempt of a request (only `host` changes between attempts). `transform`:
 * the service's `requestHeaders` (docs/policies.md#header-transforms), applied to the client's
 * fields; it can never touch the fields the gateway writes below.
 */
export function upstreamHeaders (request: FastifyRequest, transform: HeaderTransform | null = null): UpstreamHeaders {
  const raw = request.raw
  const given: IncomingHttpHeaders = raw.headers
  const listed = connectionListed(given.connection)
  const out: UpstreamHeaders = {}
  for (const name in given) {
    const value = given[name]
    if (value === undefined || REQUEST_DROP.has(name) || (listed !== null && listed.has(name))) continue
    // Identity headers are the gateway's to set: a client's X-Consumer-Username is as forged as its X-Consumer-Id.
    if (name.startsWith('x-consumer-')) continue
    if (name === 'authorization' && isGatewayBearer(value as string)) continue
    if (transform !== null && transform.skip.has(name)) continue
    out[name] = value
  }
  if (transform !== null) for (const [name, value] of transform.set) out[name] = value
  const te = given.te
  // `TE: trailers` is the one TE value that is end to end (RFC 9110 §10.1.4).
  if (typeof te === 'string' && /(^|,)\s*trailers\s*(,|;|$)/i.test(te)) out.te = 'trailers'
  const method = raw.method
  if (method === 'GET' || method === 'HEAD') delete out['content-length']

  const consumer = request.consumer
  if (consumer !== null) {
    const token = consumer.token
    if (token == null) {
      out['x-consumer-id'] = consumer.id
      out['x-consumer-name'] = consumer.name
    } else {
      // A JWT consumer (docs/jwt.md): its subject and issuer; the token itself only if configured.
      out['x-consumer-id'] = token.subject
      out['x-consumer-issuer'] = token.issuer
      if (!token.forward) delete out.authorization
    }
  }
  const peer = raw.socket.remoteAddress ?? ''
  const xff = given['x-forwarded-for']
  out['x-forwarded-for'] = xff === undefined || xff === '' ? peer : `${xff}, ${peer}`
  out['x-forwarded-proto'] = request.protocol
  out['x-forwarded-host'] = given.host ?? ''
  out['x-real-ip'] = request.ip
  out['x-request-id'] = request.id
  return out
}

/**
 * The head the client gets: the backend's fields minus hop-by-hop and rate-limit ones, changed by
 * the service's `responseHeaders` (docs/policies.md#header-transforms), plus what the gateway set
 * on the reply so far. `Vary` from both sides is merged.
 */
export function clientHeaders (upstream: Record<string, string | string[] | undefined>, reply: FastifyReply, locationPrefix: string | null, transform: HeaderTransform | null = null): OutgoingHttpHeaders {
  const listed = connectionListed(upstream.connection)
  const out: OutgoingHttpHeaders = {}
  for (const name in upstream) {
    if (RESPONSE_DROP.has(name) || (listed !== null && listed.has(name))) continue
    if (transform !== null && transform.skip.has(name)) continue
    out[name] = upstream[name]
  }
  // The service's `responseHeaders` act on the backend's fields; the gateway's own come after.
  if (transform !== null) for (const [name, value] of transform.set) out[name] = value
  const own = reply.getHeaders()
  for (const name in own) {
    const value = own[name]
    if (name === 'vary' && out.vary !== undefined) out.vary = `${String(out.vary)}, ${String(value)}`
    else out[name] = value
  }
  if (locationPrefix !== null) {
    const location = out.location
    // A backend behind stripPrefix answers with its own paths: give them the prefix back.
    if (typeof location === 'string' && location.startsWith('/') && !location.startsWith('//')) out.location = locationPrefix + location
  }
  return out
}

/** Whether a header object has more than `max` names, without allocating a key array. */
export function countExceeds (headers: object, max: number): boolean {
  let n = 0
  for (const name in headers) if (Object.hasOwn(headers, name) && ++n > max) return true
  return false
}
