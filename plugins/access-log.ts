// One JSON access line per request (docs/operations.md), replacing Fastify's two request/response lines
// (the app sets `disableRequestLogging`). Credentials never reach it: headers are not logged at
// all, key-like query parameters and anything shaped like a gateway key are redacted from the URL.
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { rawLineWriter } from '../lib/raw-log-line.js'
import { levelEnabled } from '../lib/request-logger.js'
import { redactUrl } from '../lib/url-redaction.js'
import { routeLabel, type Outcome } from './request-end.js'

/** pino `req` serializer for the app's logger: Fastify's default one logs `req.url` with its
 *  query string, keys included (docs/reliability.md, SC-01). */
export function requestSerializer (request: FastifyRequest): Record<string, unknown> {
  return { method: request.method, url: redactUrl(request.url), host: request.host, remoteAddress: request.ip }
}

/**
 * The names `fields()` writes, in order: lib/raw-log-line.ts checks the logger reshapes none of
 * them. A test holds the two to each other.
 */
export const ACCESS_LINE_FIELDS = ['reqId', 'method', 'route', 'url', 'status', 'duration_ms', 'ip', 'consumer', 'outcome', 'trace_id', 'retries', 'aborted'] as const

const json = JSON.stringify
// pino's level numbers.
const INFO = 30
const DEBUG = 20

function fields (request: FastifyRequest, status: number, durationMs: number, outcome: Outcome): string {
  // Both fields are declared by their plugins (api-keys, proxy); `?.` keeps other apps safe.
  const consumer = request.consumer
  const retries = request.proxyRetries
  const duration = Math.round(durationMs * 1000) / 1000
  // First, where the request's own logger would put it: the line reads as that logger's would,
  // without making one (lib/request-logger.ts).
  let line = `,"reqId":${json(request.id)},"method":${json(request.method)},"route":${json(routeLabel(request))}` +
    `,"url":${json(redactUrl(request.url))},"status":${status},"duration_ms":${Number.isFinite(duration) ? duration : null}` +
    `,"ip":${json(request.ip) ?? null},"consumer":${consumer == null ? null : json(consumer.id)},"outcome":${json(outcome)}` +
    // Joins this line to the backend's logs and to the trace (docs/tracing.md).
    `,"trace_id":${request.traceId ? json(request.traceId) : null}`
  if (retries !== undefined && retries > 0) line += `,"retries":${retries}`
  if (outcome === 'client_gone') line += ',"aborted":true'
  return line
}

/** Routes that load balancers probe and Prometheus scrapes every few seconds: logged at debug. */
export const PROBE_ROUTES: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics'])

export default fp(async function accessLog (fastify) {
  // Levels are fixed for the app's lifetime (LOG_LEVEL), so they are read once; building a line
  // (URL redaction, a string) is skipped when its level would drop it.
  const enabled = (level: string): boolean => levelEnabled(fastify.log, level)
  const infoEnabled = enabled('info')
  // LOG_PROBES=true logs probes and scrapes like any request; otherwise only at LOG_LEVEL=debug.
  const logProbes = fastify.config.logProbes
  const probesEnabled = logProbes ? infoEnabled : enabled('debug')
  if (!infoEnabled && !probesEnabled) return
  // The line is assembled as JSON and written in pino's layout through its stream
  // (lib/raw-log-line.ts). A logger configured in a way that could reshape it gets the line through
  // pino, parsed back into fields: a cost only such loggers (an embedding app's) pay.
  const raw = rawLineWriter(fastify.log, ACCESS_LINE_FIELDS)
  const log = fastify.log
  const write = raw ?? function throughPino (level: number, line: string, msg: string): void {
    const entry = JSON.parse(`{${line.slice(1)}}`) as Record<string, unknown>
    if (level === INFO) log.info(entry, msg)
    else log.debug(entry, msg)
  }
  fastify.requestEnds.subscribe(function logEnd (request, status, durationMs, outcome) {
    // A tunnel's own line comes when it closes (plugins/websocket/): its upgrade is not logged twice.
    if (outcome === 'upgraded') return
    const msg = outcome === 'client_gone' ? 'request aborted' : 'request completed'
    // A proxied request (its route label is a service prefix) is never a probe: no route lookup.
    if (request.metricPath != null || !PROBE_ROUTES.has(request.routeOptions?.url as string)) {
      if (infoEnabled) write(INFO, fields(request, status, durationMs, outcome), msg)
    } else if (probesEnabled) {
      write(logProbes ? INFO : DEBUG, fields(request, status, durationMs, outcome), msg)
    }
  })
}, { name: 'access-log', fastify: '5.x', dependencies: ['config', 'request-end'] })
