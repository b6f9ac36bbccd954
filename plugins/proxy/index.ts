// The proxy core (docs/proxying.md, docs/proxying.md#retries-and-circuit-breakers), on undici. One catch-all route serves every service:
//   admit (onRequest)  match the service table, check the path, then the service's API-key and
//                      rate-limit hooks
//   forward (handler)  concurrency caps (concurrency.ts), breaker admission, then either a WebSocket
//                      tunnel (plugins/websocket/) or the request body (bounded replay copy or
//                      stream) and an Exchange (exchange.ts) that owns the attempts until the last byte
// The gateway's own routes (/health, /admin, …) are static and always win over the catch-all.
import { pipeline, type Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { Agent } from 'undici'
import { BoundedBody } from '../../lib/bounded-body.js'
import { BadRequest, CircuitOpen, NotFound, Overloaded } from '../../lib/errors.js'
import { ROUTED_METHODS } from '../../lib/http-methods.js'
import { noop } from '../../lib/noop.js'
import { isIdempotent } from '../../lib/retry-policy.js'
import { UNMATCHED_PATH } from '../request-end.js'
import { acquireAll, type ConcurrencyLimit } from '../../lib/concurrency.js'
import { Exchange, type ExchangeContext, type ResponseTap } from './exchange.js'
import { upstreamHeaders } from '../../lib/http-headers.js'
import { isSafePath, normalizePath, stripPrefix, withoutKeyParams } from './paths.js'
import type { ServiceRoute } from '../services/index.js'
import type { TraceStep } from '../tracing/index.js'

/** Largest request body kept in memory so an idempotent request can be replayed on retry. */
export const REPLAY_LIMIT = 64 * 1024

/** How a queued request's span ends when its client leaves first (499, the client-abort status). */
const LEFT_THE_QUEUE = Object.assign(new Error('client left the queue'), { statusCode: 499 })

declare module 'fastify' {
  interface FastifyRequest {
    /** The service this request matched (set by the proxy's onRequest). */
    proxyRoute: ServiceRoute | null
    /** The normalized request path, without the query string. */
    proxyPath: string
    /** Retries made so far (the access log and X-Retry-Count report it). */
    proxyRetries: number
    /** Sees the response of this request (the response cache, docs/caching.md), or null. */
    proxyTap: ResponseTap | null
  }
}

export default fp(async function proxy (app) {
  const { config, gatewayMetrics: metrics } = app
  // One pool per backend origin, keep-alive, TLS always verified. Connect and response head are
  // bounded per attempt by the Exchange's timer; the connect timeout here is only a backstop.
  const dispatcher = new Agent({
    connections: 256,
    pipelining: 1,
    keepAliveTimeout: 4000,
    connect: { rejectUnauthorized: true, timeout: Math.max(...config.services.map((s) => s.timeoutMs), config.upstreamTimeoutMs, 1000) }
  })
  app.addHook('onClose', async () => { await dispatcher.close() })

  // The table is the services plugin's: swapped whole when services change (docs/admin-api.md#managing-services).
  const tables = app.serviceTables
  // Upgrades are the websocket plugin's, reached only through its decorator.
  const tunnels = app.websocketTunnels
  const tracing = app.tracing
  app.decorateRequest('proxyRoute', null)
  app.decorateRequest('proxyPath', '')
  app.decorateRequest('proxyRetries', 0)
  app.decorateRequest('proxyTap', null)

  const ctx: ExchangeContext = {
    dispatcher,
    metrics,
    idleTimeoutMs: config.upstreamIdleTimeoutMs,
    sendTimeoutMs: config.clientSendTimeoutMs,
    ends: app.requestEnds,
    tracing: app.tracing
  }

  const admit: onRequestHookHandler = function admit (request, reply, done) {
    const url = request.raw.url as string
    const q = url.indexOf('?')
    const path = normalizePath(q === -1 ? url : url.slice(0, q))
    const route = path.charCodeAt(0) === 0x2f ? tables.current.match(path) : null
    if (route === null) return done(new NotFound())
    request.metricPath = route.prefix
    if (!isSafePath(path)) return done(new BadRequest('The path may not contain . or .. segments or backslashes'))
    request.proxyRoute = route
    request.proxyPath = path
    if (tunnels.isUpgrade(request)) {
      tunnels.matched(request, route)
      // Never a half-open socket: an upgrade the service does not take is answered, then closed.
      if (!route.service.websocket) return done(new BadRequest('This service does not accept WebSocket upgrades'))
    }
    // IP rules first: a refused address costs no key lookup and no token (docs/policies.md).
    if (route.ipRules === null) authenticate(request, reply, route, done)
    else route.ipRules.call(app, request, reply, (err?: Error) => err === undefined ? authenticate(request, reply, route, done) : done(err))
  }

  /** The API-key hook, then the rate limit (unless `rateLimit: false`), then the key's quota. */
  function authenticate (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, done: (err?: Error) => void): void {
    // Each step gets an INTERNAL span when the request is traced (docs/tracing.md); null otherwise.
    const authStep = tracing.stepStarted(request, 'authenticate')
    route.authenticate.call(app, request, reply, (err?: Error) => {
      tracing.stepEnded(authStep, request, err)
      if (err !== undefined) return done(err)
      // Only a key with a quota has a quota step: nothing more to allocate for every other request.
      const quota = request.consumer?.quota == null ? null : route.quota
      const next = quota === null
        ? done
        : (err?: Error) => {
            if (err === undefined) return quota.check.call(app, request, reply, done)
            quota.refused(request, reply)
            done(err)
          }
      if (route.limit === null) return next()
      const limitStep = tracing.stepStarted(request, 'rate_limit')
      const limited = limitStep === null ? next : (e?: Error) => { tracing.stepEnded(limitStep, request, e); next(e) }
      const pending = route.limit.call(app, request, reply, limited) as unknown as Promise<void> | undefined
      if (pending !== undefined) pending.then(() => limited(), limited)
    })
  }

  function forward (request: FastifyRequest, reply: FastifyReply): void {
    const route = request.proxyRoute as ServiceRoute
    // No cap configured: no extra work at all on the hot path.
    if (route.limits === null) send(request, reply, route)
    else limited(request, reply, route, route.limits)
  }

  /**
   * Waits for a slot of each concurrency cap, then sends; or sheds with 503 (docs/configuration.md#load-shedding). The slots are
   * given back when the response closes, which every ending goes through: relayed, gateway error,
   * retries exhausted, client gone. A WebSocket upgrade gives them back earlier, once its 101 is
   * written: the tunnel that follows may live for hours and has bounds of its own
   * (plugins/websocket/tunnel-limits.ts). A client that leaves while queued leaves the queue.
   */
  function limited (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, limits: readonly ConcurrencyLimit[]): void {
    const res = reply.raw
    // Gone already: no 'close' is coming to give a slot back, so take none.
    if (res.closed) return ctx.ends.clientGone(request)
    let release: (() => void) | null = null
    let answered = false
    // The wait gets an INTERNAL span when the request is traced and had to queue (docs/tracing.md).
    let queued: TraceStep | null = null
    const dequeued = (err?: Error): void => {
      answered = true
      if (queued !== null) tracing.stepEnded(queued, request, err)
      queued = null
    }
    res.once('close', () => {
      if (release !== null) return release()
      withdraw()
      dequeued(LEFT_THE_QUEUE)
      // Fastify reports the abort itself only while the body is unread (as in exchange.ts).
      if (!res.writableFinished && request.raw.aborted !== true) ctx.ends.clientGone(request)
    })
    const withdraw = acquireAll(limits, route.service.concurrency.queueTimeoutMs, (slots) => {
      release = slots
      dequeued()
      send(request, reply, route, slots)
    }, () => {
      const err = new Overloaded()
      dequeued(err)
      metrics.shed(route.name)
      ctx.ends.mark(request, 'shed')
      reply.header('retry-after', '1').header('x-gateway-overload', 'concurrency')
      reply.send(err)
    })
    // Every cap had a slot (or none could queue): answered within acquireAll, no wait to trace.
    if (!answered) queued = tracing.stepStarted(request, 'concurrency_queue')
  }

  function send (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, slots: () => void = noop): void {
    const permit = route.breaker.acquire()
    if (permit === null) {
      // A stale cached answer may stand in for the 503 (docs/caching.md#stale-if-error).
      if (request.proxyTap?.onFailure(503) === true) return
      reply.header('retry-after', String(route.breaker.retryAfterSeconds()))
      reply.send(new CircuitOpen())
      return
    }
    if (tunnels.isUpgrade(request)) {
      tunnels.open(request, reply, route, permit, target(request, route), slots)
      return
    }
    // From here on the permit is settled on every path: by the Exchange, or released below.
    const headers = upstreamHeaders(request, route.requestHeaders)
    request.proxyTap?.upstream?.(headers)
    const exchange = new Exchange(ctx, request, reply, route, target(request, route), headers)
    const method = request.raw.method as string
    const payload = request.body as Readable | undefined
    if (method === 'GET' || method === 'HEAD' || payload == null) {
      exchange.start(permit, null, true)
      return
    }
    // A declared length over the limit never gets here (request-context's body gate).
    const declared = request.headers['content-length']
    const length = declared === undefined ? NaN : Number(declared)
    const limit = config.bodyLimit
    if (route.service.retry.maxRetries > 0 && isIdempotent(method) && length <= REPLAY_LIMIT) {
      // Small enough to keep: read it whole so a retry can send it again (docs/proxying.md#retries-and-circuit-breakers).
      readBody(payload).then((body) => exchange.start(permit, body, true), (err: Error) => {
        permit.release()
        if (!reply.sent) reply.send(err)
      })
    } else if (Number.isNaN(length)) {
      // Chunked: counted against the limit on the way through, in coalesced writes; sent once.
      const bounded = new BoundedBody(limit)
      pipeline(payload, bounded, noop)
      exchange.start(permit, bounded, false)
    } else {
      exchange.start(permit, payload, false)
    }
  }

  await app.register(async function proxyScope (scope) {
    // Bodies of any content type stream through untouched: no parser may turn them into strings.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', function passThrough (_request, payload, done) { done(null, payload) })
    scope.route({
      method: ROUTED_METHODS as string[],
      url: '/*',
      exposeHeadRoute: false,
      config: { metricPath: UNMATCHED_PATH },
      onRequest: admit,
      handler: forward
    })
  })
}, {
  name: 'proxy',
  fastify: '5.x',
  dependencies: ['config', 'services', 'gateway-metrics', 'request-end', 'tracing', 'websocket']
})

/** The path and query a backend is sent: prefix stripped if the service says so, key parameters removed. */
function target (request: FastifyRequest, route: ServiceRoute): string {
  const url = request.raw.url as string
  const path = route.service.stripPrefix ? stripPrefix(request.proxyPath, route.prefix) : request.proxyPath
  const q = url.indexOf('?')
  if (q === -1) return path
  const query = url.slice(q + 1)
  const kept = withoutKeyParams(query)
  return kept === '' && query !== '' ? path : `${path}?${kept}`
}

function readBody (stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)))
    stream.once('error', reject)
  })
}
