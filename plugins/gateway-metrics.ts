// Prometheus metrics (docs/operations.md#metrics): fastify-metrics as the exporter, one prom-client registry per app
// (two gateways in one process never share a series), the seed's metric names plus a histogram,
// retries, store errors and fail-open counters. Labels are bounded: `path` is the route template
// or the service prefix, never the raw URL.
import fp from 'fastify-plugin'
import fastifyMetrics from 'fastify-metrics'
import promClient from '@platformatic/prom-client'
import type { ServiceConfig } from '../lib/config.js'
import { routeLabel } from './request-end.js'
import { DurationHistogram, type HistogramSeries } from '../lib/duration-histogram.js'
import { LatencySummary } from '../lib/latency-summary.js'

export type BreakerStateName = 'closed' | 'open' | 'half-open'

/** The label set of gateway_cache_requests_total (docs/caching.md#metrics). */
export const CACHE_RESULTS = ['hit', 'miss', 'stale', 'bypass'] as const
export type CacheResult = typeof CACHE_RESULTS[number]

/** Every store operation whose failure is counted: the label set of gateway_store_errors_total. */
export const STORE_OPERATIONS = [
  'keys.findByHash', 'keys.touch', 'keys.create', 'keys.list', 'keys.get', 'keys.revoke', 'keys.delete',
  'rate_limit', 'quota', 'failures.reserve', 'failures.release', 'services.read', 'services.write'
] as const
export type StoreOperation = typeof STORE_OPERATIONS[number]

export interface GatewayMetrics {
  rateLimited (): void
  backendRequest (service: string): void
  backendError (service: string): void
  breakerState (service: string, state: BreakerStateName): void
  breakerTrip (service: string): void
  retry (service: string): void
  /** A request refused by a concurrency cap (docs/configuration.md#load-shedding). */
  shed (service: string): void
  storeError (operation: StoreOperation): void
  rateLimitFailOpen (): void
  /** Starts a service's series at 0 (and its breaker closed): a service added at run time. */
  addService (service: string): void
  /** Drops every series of a removed service. */
  removeService (service: string): void
  /** The version of the service table in use (docs/admin-api.md#managing-services). */
  servicesVersion (version: number): void
  /** One request to a caching service: how the response cache answered it (docs/caching.md). */
  cacheResult (service: string, result: CacheResult): void
  /** Where the gauge of bytes held by the response cache reads from (null: nothing to report). */
  cacheBytes (read: () => number | null): void
  /** This app's registry (what GET /metrics exposes). */
  readonly registry: promClient.Registry
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayMetrics: GatewayMetrics
  }
}

const BREAKER_VALUE: Record<BreakerStateName, number> = { closed: 1, 'half-open': 0.5, open: 0 }

// Seconds buckets from 1 ms to 30 s: gateway overhead at the low end, upstream timeouts at the top.
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * A counter's label child for the request path: an increment adds to a field, and the counter's
 * collect() hands the sum to prom-client at each scrape. prom-client works out a series from its
 * labels at every inc(), even through a label child.
 */
class DeferredCount {
  #pending = 0
  readonly #child: { inc (n: number): void }
  constructor (child: { inc (n: number): void }) { this.#child = child }
  inc (): void { this.#pending++ }
  flush (): void {
    if (this.#pending === 0) return
    this.#child.inc(this.#pending)
    this.#pending = 0
  }
}

interface RequestSeries {
  readonly count: DeferredCount
  readonly summary: { observe (v: number): void }
  readonly histogram: HistogramSeries
}

/**
 * The 5xx statuses a proxied service's request series start at 0 with: the ones the gateway itself
 * answers for a service (502 unreachable or a bad response, 503 breaker open or shed, 504 attempt
 * timed out, 500 an error of its own) and the backend's own 500/503 relayed. rate() cannot see the
 * first increments of a series that appears with its first error: a burst of 502s from a fresh
 * series would read as 0 on the dashboard and in the 5xx alert.
 */
export const SERVICE_5XX = [500, 502, 503, 504] as const
/** The method every live service's 5xx series exist for before its first request. */
const FIRST_METHOD = 'GET'

export default fp(async function gatewayMetrics (fastify) {
  const registry = new promClient.Registry()
  // fastify-metrics reads `client.register` for its own metrics; handing it a client whose
  // register is this app's registry keeps everything out of prom-client's global registry.
  const client = { ...promClient, register: registry }
  await fastify.register(fastifyMetrics.default, {
    promClient: client as never,
    endpoint: null, // GET /metrics lives in routes/metrics.ts (text or JSON)
    routeMetrics: { enabled: false }, // we keep the seed's millisecond names instead
    defaultMetrics: { enabled: true, register: registry as never }
  })
  const C = fastify.metrics.client as unknown as typeof promClient
  const exemplars = fastify.config.tracing.exporting
  const registers = [registry]
  const started = Date.now()

  // eslint-disable-next-line no-new -- registering it is the point; `collect` runs on each scrape
  new C.Gauge({
    name: 'gateway_uptime_seconds',
    help: 'Time since the gateway started, in seconds',
    registers,
    collect () { this.set((Date.now() - started) / 1000) }
  })
  const ends = fastify.requestEnds
  // eslint-disable-next-line no-new -- registering it is the point; `collect` runs on each scrape
  new C.Gauge({
    name: 'gateway_requests_in_flight',
    help: 'Requests being processed now',
    registers,
    collect () { this.set(ends.inFlight) }
  })
  const rateLimited = new C.Counter({ name: 'gateway_rate_limited_total', help: 'Requests rejected by the rate limiter', registers })
  // Which service prefixes have their 5xx series at 0, for which methods: every live prefix for
  // GET (read from the live service table at each scrape, as the WebSocket series are), and each
  // other method from the first request a service gets with it.
  const zeroed = new Map<string, Set<string>>()
  function zero5xx (method: string, path: string): void {
    let methods = zeroed.get(path)
    if (methods === undefined) zeroed.set(path, methods = new Set())
    if (methods.has(method)) return
    methods.add(method)
    for (const status of SERVICE_5XX) requests.inc({ method, path, status: String(status) }, 0)
  }
  const requests = new C.Counter({
    name: 'gateway_http_requests_total',
    help: 'HTTP requests by method, path (route or service prefix) and status',
    labelNames: ['method', 'path', 'status'],
    registers,
    collect () {
      for (const byMethod of series.values()) {
        // forEach skips the holes of an array indexed by status.
        for (const byStatus of byMethod.values()) byStatus.forEach((s) => { s.count.flush() })
      }
      if (!fastify.hasDecorator('serviceTables')) return
      const live = new Set(fastify.serviceTables.current.routes.map((r) => r.prefix))
      for (const prefix of live) zero5xx(FIRST_METHOD, prefix)
      // A prefix no longer served drops the series nothing has counted on.
      for (const [prefix, methods] of zeroed) {
        if (live.has(prefix)) continue
        zeroed.delete(prefix)
        for (const method of methods) {
          for (const status of SERVICE_5XX) {
            if (series.get(prefix)?.get(method)?.[status] === undefined) this.remove({ method, path: prefix, status: String(status) })
          }
        }
      }
    }
  })
  // The seed's summary, kept in a sketch per series (lib/latency-summary.ts): an observation is a
  // bucket count, the quantiles are worked out at scrape time.
  const durationMs = new LatencySummary({
    name: 'gateway_http_request_duration_ms',
    help: 'Request duration in milliseconds (quantiles over the last 1-2 minutes)',
    labelNames: ['method', 'path'],
    percentiles: [0.5, 0.95, 0.99],
    maxAgeSeconds: 120
  })
  registry.registerMetric(durationMs as unknown as promClient.Metric)
  fastify.addHook('onClose', async () => { durationMs.close() })
  // prom-client's Histogram looks a series up from its labels at every observation; this one hands
  // the series over once (lib/duration-histogram.ts) and prints what a Histogram prints.
  const durationSeconds = new DurationHistogram({
    name: 'gateway_http_request_duration_seconds',
    help: 'Request duration in seconds (histogram: aggregate across instances with histogram_quantile)',
    labelNames: ['method', 'path'],
    buckets: DURATION_BUCKETS
  })
  registry.registerMetric(durationSeconds as unknown as promClient.Metric)
  const perService = (name: string, help: string) =>
    new C.Counter({ name, help, labelNames: ['service'], registers })
  const backendRequests = new C.Counter({
    name: 'gateway_backend_requests_total',
    help: 'Requests sent to backend services (each attempt)',
    labelNames: ['service'],
    registers,
    collect () { for (const s of services.values()) s.requests.flush() }
  })
  const backendErrors = perService('gateway_backend_errors_total', 'Failed backend attempts (connection errors, timeouts, 5xx)')
  const breakerTrips = perService('gateway_circuit_breaker_trips_total', 'Times a circuit breaker opened')
  const retries = perService('gateway_retries_total', 'Retried backend attempts')
  const shed = perService('gateway_requests_shed_total', 'Requests answered 503 by a concurrency cap (MAX_CONCURRENT_REQUESTS or the service\'s maxConcurrent)')
  const breakerState = new C.Gauge({
    name: 'gateway_circuit_breaker_state',
    help: 'Circuit breaker state per service: 1 closed, 0.5 half-open, 0 open',
    labelNames: ['service'],
    registers
  })
  const storeErrors = new C.Counter({
    name: 'gateway_store_errors_total',
    help: 'Failed store operations (Redis or embedded) by operation',
    labelNames: ['operation'],
    registers
  })
  const tableVersion = new C.Gauge({
    name: 'gateway_services_version',
    help: 'Version of the service table in use (bumped by every change through the admin API or a reload)',
    registers
  })
  const failOpen = new C.Counter({
    name: 'gateway_rate_limit_fail_open_total',
    help: 'Requests let through because the rate-limit store failed (RATE_LIMIT_FAIL_MODE=open)',
    registers
  })

  const cacheRequests = new C.Counter({
    name: 'gateway_cache_requests_total',
    help: 'Requests to caching services by how the response cache answered: hit, miss, stale (served instead of an error), bypass',
    labelNames: ['service', 'result'],
    registers
  })
  let readCacheBytes: () => number | null = () => null
  // eslint-disable-next-line no-new -- registering it is the point; `collect` runs on each scrape
  new C.Gauge({
    name: 'gateway_cache_bytes',
    help: 'Bytes the response cache holds in this process (bodies and headers): the embedded store\'s entries, or the near copies of Redis entries',
    registers,
    collect () {
      const bytes = readCacheBytes()
      if (bytes !== null) this.set(bytes)
    }
  })
  const cacheSeries = new Map<string, Array<{ inc (): void }>>()

  // Label children, created once per value so the hot path does a Map lookup and an increment.
  interface ServiceSeries { requests: DeferredCount, errors: { inc (): void }, trips: { inc (): void }, retries: { inc (): void }, shed: { inc (): void }, state: { set (v: number): void } }
  const services = new Map<string, ServiceSeries>()
  // A removed service's requests still in flight must not bring its series back.
  const removed = new Set<string>()
  const NO_SERIES: ServiceSeries = { requests: new DeferredCount({ inc () {} }), errors: { inc () {} }, trips: { inc () {} }, retries: { inc () {} }, shed: { inc () {} }, state: { set () {} } }
  const service = (name: string): ServiceSeries => {
    let s = services.get(name)
    if (s === undefined) {
      if (removed.has(name)) return NO_SERIES
      s = {
        requests: new DeferredCount(backendRequests.labels(name)),
        errors: backendErrors.labels(name),
        trips: breakerTrips.labels(name),
        retries: retries.labels(name),
        shed: shed.labels(name),
        state: breakerState.labels(name)
      }
      services.set(name, s)
    }
    return s
  }
  // Every configured service exports its series from the start (0 and closed), so rate() and the
  // dashboard work before the first failure.
  const configured: readonly ServiceConfig[] = fastify.config.services
  const perServiceCounters = [backendRequests, backendErrors, breakerTrips, retries, shed]
  const addService = (name: string): void => {
    removed.delete(name)
    for (const c of perServiceCounters) c.inc({ service: name }, 0)
    service(name).state.set(1)
  }
  for (const svc of configured) addService(svc.name)
  // Known label set, so every series exists at 0 before the first failure (dashboards show 0, not
  // "no data"); the type of storeError() keeps callers inside it.
  const storeOps = new Map<string, { inc (): void }>()
  for (const operation of STORE_OPERATIONS) {
    const c = storeErrors.labels(operation)
    c.inc(0)
    storeOps.set(operation, c)
  }

  const metrics: GatewayMetrics = {
    registry,
    rateLimited () { rateLimited.inc() },
    backendRequest (name) { service(name).requests.inc() },
    backendError (name) { service(name).errors.inc() },
    breakerState (name, state) { service(name).state.set(BREAKER_VALUE[state]) },
    breakerTrip (name) { service(name).trips.inc() },
    retry (name) { service(name).retries.inc() },
    shed (name) { service(name).shed.inc() },
    storeError (operation) { storeOps.get(operation)?.inc() },
    rateLimitFailOpen () { failOpen.inc() },
    addService,
    removeService (name) {
      for (const c of [...perServiceCounters, breakerState]) c.remove({ service: name })
      if (cacheSeries.delete(name)) for (const result of CACHE_RESULTS) cacheRequests.remove({ service: name, result })
      services.delete(name)
      removed.add(name)
    },
    servicesVersion (version) { tableVersion.set(version) },
    cacheResult (name, result) {
      let byResult = cacheSeries.get(name)
      if (byResult === undefined) {
        if (removed.has(name)) return
        // The whole label set at once, so every result reads 0 rather than "no data" until it happens.
        byResult = CACHE_RESULTS.map((r) => {
          const c = cacheRequests.labels(name, r)
          c.inc(0)
          return c
        })
        cacheSeries.set(name, byResult)
      }
      byResult[CACHE_RESULTS.indexOf(result)].inc()
    },
    cacheBytes (read) { readCacheBytes = read }
  }
  fastify.decorate('gatewayMetrics', metrics)

  // Request series keyed by method, path and status: all three are bounded (llhttp accepts a
  // fixed set of methods, paths are route templates or prefixes, statuses are 100-599).
  // Looked up by path, then method, then status as an array index: no string building per request.
  const series = new Map<string, Map<string, RequestSeries[]>>()
  const seriesFor = (method: string, path: string, status: number, proxied: boolean): RequestSeries => {
    let byMethod = series.get(path)
    if (byMethod === undefined) series.set(path, byMethod = new Map())
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) {
      byMethod.set(method, byStatus = [])
      if (proxied) zero5xx(method, path)
    }
    let s = byStatus[status]
    if (s === undefined) {
      s = byStatus[status] = {
        count: new DeferredCount(requests.labels(method, path, String(status))),
        summary: durationMs.labels(method, path),
        histogram: durationSeconds.labels(method, path)
      }
    }
    return s
  }

  // One series update per request, at its one end (plugins/request-end.ts). `metricPath` is set by
  // the proxy (the service prefix) once a request matched a service.
  ends.subscribe(function observe (request, status, ms) {
    const s = seriesFor(request.method, routeLabel(request), status, request.metricPath != null)
    s.count.inc()
    s.summary.observe(ms)
    // A recorded request's trace id rides along as its bucket's exemplar, shown on OpenMetrics
    // scrapes (docs/tracing.md#exemplars); only when spans are exported, so it names a trace that
    // exists. `traceRecorded` is the tracing plugin's (plugins/tracing/).
    if (exemplars && request.traceRecorded) s.histogram.observeWithExemplar(ms / 1000, { trace_id: request.traceId })
    else s.histogram.observe(ms / 1000)
  })
}, { name: 'gateway-metrics', fastify: '5.x', dependencies: ['config', 'request-end'] })
