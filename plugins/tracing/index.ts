// Trace context and OpenTelemetry spans (docs/tracing.md). Two modes, decided once at start-up:
//
//   propagation only (OTEL_TRACES_EXPORTER=none, the default): every request gets a trace id (the
//     client's, from a valid `traceparent`, or a new one) and each upstream attempt a fresh span
//     id; the backend receives `traceparent` and the client's `tracestate`. No SDK object is built
//     per request: a header parse, or a few random bytes, and one string per attempt.
//   export (OTEL_TRACES_EXPORTER=otlp): a SERVER span per proxied request, INTERNAL spans for
//     authentication and rate limiting, a CLIENT span per upstream attempt, exported by the SDK's
//     batch processor (plugins/tracing/sdk.ts). Sampling is decided first, by the same rules as
//     the SDK's samplers: a request left out never reaches the SDK and takes the first mode's path.
//
// The gateway's own core calls in at the steps it owns (no auto-instrumentation): the proxy's
// admit (authentication, rate limit), the attempt loop (plugins/proxy/exchange.ts) and the
// WebSocket dial (plugins/websocket/). The SERVER span ends at the request's one end
// (plugins/request-end.ts).
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import promClient from '@platformatic/prom-client'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Context, type Span } from '@opentelemetry/api'
import { RandomIdGenerator, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace'
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_RESEND_COUNT, ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_URL_PATH
} from '@opentelemetry/semantic-conventions'
import { formatTraceparent, parseTraceparent, sampledBy, type RemoteParent } from '../../lib/trace-context.js'
import { UNMATCHED_PATH, type Outcome } from '../request-end.js'
import { tracePipeline, type DropReason } from './sdk.js'

/** The steps before the backend that get an INTERNAL span: admission, and a wait for a concurrency slot. */
export type StepName = 'authenticate' | 'rate_limit' | 'concurrency_queue'

/** A started INTERNAL span (only while the request's SERVER span is recording). */
export interface TraceStep { readonly span: Span, readonly name: StepName }

/** A started CLIENT span of one upstream attempt (only while recording). */
export type TraceAttempt = Span

/** Where an attempt goes: the backend's origin and Host. */
export interface AttemptTarget { readonly origin: string, readonly host: string }

export interface Tracing {
  /** Whether spans are exported (OTEL_TRACES_EXPORTER=otlp). */
  readonly exporting: boolean
  /** Starts the INTERNAL span of an admission step; null when the request is not recorded. */
  stepStarted (request: FastifyRequest, name: StepName): TraceStep | null
  /** Ends it with its outcome: `err` is the step's refusal (401, 429, 503…), undefined if it passed. */
  stepEnded (step: TraceStep | null, request: FastifyRequest, err?: Error): void
  /**
   * Before an upstream attempt is sent: writes `traceparent` (naming this attempt's span) and the
   * client's `tracestate` into `headers`; returns the attempt's CLIENT span when recording.
   * `resendCount` is 0 for the first attempt, n for the n-th retry.
   */
  attemptStarted (request: FastifyRequest, resendCount: number, target: AttemptTarget, headers: Record<string, string | string[]>): TraceAttempt | null
  /** The attempt's outcome: its response status (0 if none) and the error that ended it, if any. */
  attemptEnded (attempt: TraceAttempt | null, status: number, err: (Error & { code?: string }) | null): void
}

declare module 'fastify' {
  interface FastifyInstance {
    tracing: Tracing
  }
  interface FastifyRequest {
    /** The request's W3C trace id (32 hex digits); '' when it ended before the tracing hook ran. */
    traceId: string
    /** Whether the request's spans are recorded and exported (an exemplar may name its trace). */
    traceRecorded: boolean
  }
}

// Per-request fields, declared up front (stable object shapes).
const kSampled = Symbol('tracing.sampled')
const kTracestate = Symbol('tracing.tracestate')
const kSpan = Symbol('tracing.span')
const kContext = Symbol('tracing.context')
type Traced = FastifyRequest & {
  [kSampled]: boolean
  [kTracestate]: string | undefined
  /** The SERVER span while it is recording; null otherwise. */
  [kSpan]: Span | null
  /** The context that makes the SERVER span the parent of the request's other spans. */
  [kContext]: Context | null
}

/** Spans dropped by the batch processor, by reason (docs/tracing.md#a-collector-that-is-down). */
const DROPPED_METRIC = 'gateway_trace_spans_dropped_total'
const DROP_REASONS: readonly DropReason[] = ['queue_full', 'export_failed']

/** An export failure is logged at most this often: a collector down for an hour is one line a minute. */
const EXPORT_WARN_INTERVAL_MS = 60_000

export default fp(async function tracing (app) {
  const config = app.config.tracing
  const ids = new RandomIdGenerator()
  const sampler = config.sampler
  const ratioSampler = sampler.name.endsWith('traceidratio') ? new TraceIdRatioBasedSampler(sampler.ratio) : null

  const dropped = new promClient.Counter({
    name: DROPPED_METRIC,
    help: 'Spans not exported: the bounded queue was full (queue_full) or the collector did not take them (export_failed)',
    labelNames: ['reason'],
    registers: [app.gatewayMetrics.registry]
  })
  for (const reason of DROP_REASONS) dropped.inc({ reason }, 0)

  app.decorateRequest('traceId', '')
  app.decorateRequest('traceRecorded', false)
  app.decorateRequest(kSampled as unknown as string, false)
  app.decorateRequest(kTracestate as unknown as string, undefined)
  app.decorateRequest(kSpan as unknown as string, null)
  app.decorateRequest(kContext as unknown as string, null)

  let lastWarn = 0
  const pipeline = config.exporting
    ? tracePipeline(config, (count, reason) => {
      dropped.inc({ reason }, count)
      const now = Date.now()
      if (reason === 'export_failed' && now - lastWarn >= EXPORT_WARN_INTERVAL_MS) {
        lastWarn = now
        // The URL only: export headers may hold a vendor's token.
        app.log.warn({ event: 'trace_export_failed', spans: count, endpoint: config.url }, 'spans could not be exported; requests are not affected')
      }
    })
    : null
  const tracer = pipeline?.tracer ?? null
  const pinned = pipeline?.ids ?? null
  if (pipeline !== null) {
    // What is queued is sent on close, but a collector that is down never holds the exit up for
    // longer than a batch export may take, nor past SHUTDOWN_TIMEOUT_MS.
    const graceMs = Math.min(app.config.shutdownTimeoutMs, config.batch.exportTimeoutMillis)
    app.addHook('onClose', async () => {
      let timer: NodeJS.Timeout | undefined
      const gaveUp = new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs) })
      await Promise.race([pipeline.shutdown().catch(() => {}), gaveUp])
      clearTimeout(timer)
    })
  }

  // Every request: its trace (continued or new) and the sampled flag the backend will see. The
  // SERVER span exists only for proxied requests (the proxy's catch-all route) and only when exporting.
  app.addHook('onRequest', function traceContext (request, _reply, done) {
    const r = request as Traced
    const headers = request.raw.headers
    const parent = parseTraceparent(headers.traceparent)
    // A `tracestate` belongs to the trace its `traceparent` names: dropped with an invalid one.
    r[kTracestate] = parent === null ? undefined : headers.tracestate as string | undefined
    const traceId = parent?.traceId ?? ids.generateTraceId()
    const sampled = sampledBy(sampler, ratioSampler, parent, traceId)
    request.traceId = traceId
    r[kSampled] = sampled
    if (sampled && tracer !== null && request.routeOptions.config?.metricPath === UNMATCHED_PATH) {
      startServerSpan(r, parent, traceId)
    }
    done()
  })

  /** The SERVER span of a sampled proxied request; the SDK's sampler agrees (same rules, same trace id). */
  function startServerSpan (r: Traced, parent: RemoteParent | null, traceId: string): void {
    if (parent === null) (pinned as NonNullable<typeof pinned>).pin(traceId)
    const parentContext = parent === null
      ? ROOT_CONTEXT
      : trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true })
    const url = r.raw.url as string
    const q = url.indexOf('?')
    const span = (tracer as NonNullable<typeof tracer>).startSpan(r.method, {
      kind: SpanKind.SERVER,
      attributes: {
        [ATTR_HTTP_REQUEST_METHOD]: r.method,
        // The path only: a query string may carry a key (docs/proxying.md).
        [ATTR_URL_PATH]: q === -1 ? url : url.slice(0, q),
        [ATTR_CLIENT_ADDRESS]: r.ip
      }
    }, parentContext)
    if (parent === null) (pinned as NonNullable<typeof pinned>).pin(null)
    const sc = span.spanContext()
    r.traceId = sc.traceId
    r[kSampled] = (sc.traceFlags & TraceFlags.SAMPLED) !== 0
    if (span.isRecording()) {
      r.traceRecorded = true
      r[kSpan] = span
      r[kContext] = trace.setSpan(ROOT_CONTEXT, span)
    }
  }

  if (tracer !== null) {
    app.requestEnds.subscribe(function endServerSpan (request, status, _durationMs, outcome: Outcome) {
      const r = request as Traced
      const span = r[kSpan]
      if (span === null) return
      r[kSpan] = null
      r[kContext] = null
      const route = request.proxyRoute
      const prefix = request.metricPath
      if (prefix !== null) {
        span.updateName(`${request.method} ${prefix}`)
        span.setAttribute(ATTR_HTTP_ROUTE, prefix)
      }
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
      span.setAttribute('gateway.outcome', outcome)
      if (route !== null) span.setAttribute('gateway.service', route.name)
      const consumer = request.consumer
      if (consumer != null) span.setAttribute('gateway.consumer.id', consumer.id)
      if (status >= 500) {
        span.setAttribute(ATTR_ERROR_TYPE, String(status))
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
      span.end()
    })
  }

  const tracing: Tracing = {
    exporting: tracer !== null,
    stepStarted (request, name) {
      const parent = (request as Traced)[kContext]
      if (parent === null) return null
      const span = (tracer as NonNullable<typeof tracer>).startSpan(name, { kind: SpanKind.INTERNAL }, parent)
      return { span, name }
    },
    stepEnded (step, request, err) {
      if (step === null) return
      const { span, name } = step
      const status = (err as { statusCode?: number } | undefined)?.statusCode ?? (err === undefined ? 0 : 500)
      let outcome: string
      if (name === 'authenticate') {
        outcome = err === undefined ? (request.consumer != null ? 'authenticated' : 'anonymous') : 'rejected'
      } else if (name === 'concurrency_queue') {
        outcome = err === undefined ? 'admitted' : status === 503 ? 'shed' : 'client_gone'
      } else {
        outcome = err === undefined ? 'allowed' : status === 429 ? 'limited' : 'rejected'
      }
      span.setAttribute(`gateway.${name}.outcome`, outcome)
      if (status !== 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
      // A refusal is the step working; only the gateway failing (a store down: 5xx) is an error.
      if (status >= 500) {
        span.setAttribute(ATTR_ERROR_TYPE, String(status))
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
      span.end()
    },
    attemptStarted (request, resendCount, target, headers) {
      const r = request as Traced
      const parent = r[kContext]
      let attempt: Span | null = null
      let spanId: string
      if (parent === null) {
        spanId = ids.generateSpanId()
      } else {
        attempt = (tracer as NonNullable<typeof tracer>).startSpan(`${request.method}`, {
          kind: SpanKind.CLIENT,
          attributes: attemptAttributes(request.method, resendCount, target)
        }, parent)
        spanId = attempt.spanContext().spanId
      }
      headers.traceparent = formatTraceparent(request.traceId, spanId, r[kSampled])
      const state = r[kTracestate]
      if (state !== undefined) headers.tracestate = state
      return attempt
    },
    attemptEnded (attempt, status, err) {
      if (attempt === null) return
      if (status > 0) attempt.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
      // Semantic conventions: a CLIENT span's 4xx and 5xx are errors, as is no response at all.
      if (err !== null) {
        attempt.setAttribute(ATTR_ERROR_TYPE, errorType(err))
        attempt.setStatus({ code: SpanStatusCode.ERROR })
      } else if (status >= 400) {
        attempt.setAttribute(ATTR_ERROR_TYPE, String(status))
        attempt.setStatus({ code: SpanStatusCode.ERROR })
      }
      attempt.end()
    }
  }
  app.decorate('tracing', tracing)
}, { name: 'tracing', fastify: '5.x', dependencies: ['config', 'request-end', 'gateway-metrics'] })

function attemptAttributes (method: string, resendCount: number, target: AttemptTarget): Record<string, string | number> {
  const host = target.host
  // `host` is `name[:port]` (IPv6 in brackets); without a port, the scheme's.
  const colon = host.lastIndexOf(':')
  const hasPort = colon > host.lastIndexOf(']')
  const address = hasPort ? host.slice(0, colon) : host
  const port = hasPort ? Number(host.slice(colon + 1)) : target.origin.startsWith('https:') ? 443 : 80
  const attributes: Record<string, string | number> = {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_SERVER_ADDRESS]: address.startsWith('[') ? address.slice(1, -1) : address,
    [ATTR_SERVER_PORT]: port
  }
  if (resendCount > 0) attributes[ATTR_HTTP_REQUEST_RESEND_COUNT] = resendCount
  return attributes
}

/** The low-cardinality kind of failure: the gateway's own codes (timeout, client gone) or undici's. */
function errorType (err: Error & { code?: string, cause?: unknown }): string {
  const cause = err.cause as { code?: string } | undefined
  return cause?.code ?? err.code ?? err.name
}
