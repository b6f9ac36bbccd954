// One JSON access line per request (docs/operations.md), replacing Fastify's two request/response lines
// (the app sets `disableRequestLogging`). Credentials never reach it: headers are not logged at
// all, key-like query parameters and anything shaped like a gateway key are redacted from the URL.
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { levelEnabled } from '../lib/request-logger.js'
import { redactUrl } from '../lib/url-redaction.js'
import { routeLabel, type Outcome } from './request-end.js'

/** pino `req` serializer for the app's logger: Fastify's default one logs `req.url` with its
 *  query string, keys included (docs/reliability.md, SC-01). */
export function requestSerializer (request: FastifyRequest): Record<string, unknown> {
  return { method: request.method, url: redactUrl(request.url), host: request.host, remoteAddress: request.ip }
}

function line (request: FastifyRequest, status: number, durationMs: number, outcome: Outcome) {
  // Both fields are declared by their plugins (api-keys, proxy); `?.` keeps other apps safe.
  const consumer = request.consumer
  const retries = request.proxyRetries
  const entry: Record<string, unknown> = {
    // First, where the request's own logger would put it: the line reads as that logger's would,
    // without making one (lib/request-logger.ts).
    reqId: request.id,
    method: request.method,
    route: routeLabel(request),
    url: redactUrl(request.url),
    status,
    duration_ms: Math.round(durationMs * 1000) / 1000,
    ip: request.ip,
    consumer: consumer?.id ?? null,
    outcome,
    // Joins this line to the backend's logs and to the trace (docs/tracing.md).
    trace_id: request.traceId || null
  }
  if (retries !== undefined && retries > 0) entry.retries = retries
  if (outcome === 'client_gone') entry.aborted = true
  return entry
}

/** Routes that load balancers probe and Prometheus scrapes every few seconds: logged at debug. */
export const PROBE_ROUTES: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics'])

export default fp(async function accessLog (fastify) {
  // Levels are fixed for the app's lifetime (LOG_LEVEL), so they are read once; building a line
  // (URL redaction, an object) is skipped when its level would drop it.
  const enabled = (level: string): boolean => levelEnabled(fastify.log, level)
  const infoEnabled = enabled('info')
  // LOG_PROBES=true logs probes and scrapes like any request; otherwise only at LOG_LEVEL=debug.
  const logProbes = fastify.config.logProbes
  const probesEnabled = logProbes ? infoEnabled : enabled('debug')
  if (!infoEnabled && !probesEnabled) return
  const log = fastify.log
  fastify.requestEnds.subscribe(function logEnd (request, status, durationMs, outcome) {
    // A tunnel's own line comes when it closes (plugins/websocket/): its upgrade is not logged twice.
    if (outcome === 'upgraded') return
    const msg = outcome === 'client_gone' ? 'request aborted' : 'request completed'
    // A proxied request (its route label is a service prefix) is never a probe: no route lookup.
    if (request.metricPath != null || !PROBE_ROUTES.has(request.routeOptions?.url as string)) {
      if (infoEnabled) log.info(line(request, status, durationMs, outcome), msg)
    } else if (probesEnabled) {
      if (logProbes) log.info(line(request, status, durationMs, outcome), msg)
      else log.debug(line(request, status, durationMs, outcome), msg)
    }
  })
}, { name: 'access-log', fastify: '5.x', dependencies: ['config', 'request-end'] })
