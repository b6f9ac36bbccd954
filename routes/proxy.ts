// Proxying (SPEC §4, §8): one encapsulated scope per service, @fastify/http-proxy underneath.
// In each scope a request runs: API-key hook → rate-limit hook → handler (breaker admission,
// bounded replay copy) → reply-from's attempt loop, where every attempt's outcome is recorded on
// the breaker and the metrics, and a retry may go to another backend.
import type { IncomingHttpHeaders } from 'node:http'
import { pipeline, type Readable } from 'node:stream'
import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Agent } from 'undici'
import { Balancer } from '../src/balancer.js'
import { BoundedBody } from '../src/bounded-body.js'
import type { ServiceConfig } from '../src/config.js'
import { BadGateway, CircuitOpen, GatewayTimeout, PayloadTooLarge } from '../src/errors.js'
import { isIdempotent, isRetryableStatus, RetryBudget, retryDelay } from '../src/retry-policy.js'
import type { BreakerPermit } from '../plugins/circuit-breakers.js'
import { MAX_HEADER_COUNT } from '../plugins/request-context.js'

/** Largest request body kept in memory so an idempotent request can be replayed on retry. */
export const REPLAY_LIMIT = 64 * 1024

/** Per-request proxy state; one object per proxied request. */
interface ProxyAttempt {
  backend: number
  permit: BreakerPermit | null
  retries: number
  replayable: boolean
  /** The backend's response head was unacceptable (RELIABILITY FT-08): answer 502 instead. */
  badResponse: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    proxyAttempt: ProxyAttempt | null
  }
}

/** reply-from's internal request object, which it hands back to retryDelay on every attempt. */
interface UpstreamRequest {
  url: URL
  headers: Record<string, unknown>
}

interface AttemptContext {
  err?: (Error & { code?: string }) | null
  req: UpstreamRequest
  res?: { statusCode: number, headers: IncomingHttpHeaders, stream: Readable } | null
}

const HOP_BY_HOP_REQUEST = ['keep-alive', 'proxy-connection', 'proxy', 'upgrade', 'http2-settings', 'expect', 'transfer-encoding']
const HOP_BY_HOP_RESPONSE = ['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'http2-settings', 'trailer', 'transfer-encoding', 'te']
/** The limit a client hits is the gateway's: a backend's own rate-limit headers would mislead it. */
const BACKEND_LIMIT_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit', 'ratelimit-policy']
/** Errors where the request never reached a backend's application: safe to retry, and a sign the backend is down. */
const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT'])

export default fp(async function proxyRoutes (app) {
  // One pool for all services: keep-alive to every backend, TLS always verified (reply-from's
  // own default turns verification off, STYLE.md "Known traps").
  const agent = new Agent({
    connections: 256,
    pipelining: 1,
    keepAliveTimeout: 4000,
    connect: { rejectUnauthorized: true, timeout: Math.min(5000, app.config.upstreamTimeoutMs) }
  })
  app.addHook('onClose', async () => { await agent.close() })
  app.decorateRequest('proxyAttempt', null)
  app.addHook('onRequestAbort', (request, done) => {
    // The client went away before an outcome: free a half-open trial slot (SPEC §8).
    request.proxyAttempt?.permit?.release()
    done()
  })

  for (const service of app.config.services) {
    await app.register(serviceScope, { service, agent })
  }
}, {
  name: 'proxy',
  dependencies: ['api-keys', 'rate-limit', 'circuit-breakers', 'health-checks', 'gateway-metrics']
})

async function serviceScope (scope: FastifyInstance, { service, agent }: { service: ServiceConfig, agent: Agent }): Promise<void> {
  scope.addHook('onRequest', scope.apiKeys.hookFor(service))
  if (!service.unlimited) scope.addHook('onRequest', scope.rateLimit.hookFor(service))

  const name = service.name
  const backends = service.backends
  const balancer = new Balancer(backends, service.strategy)
  const health = scope.backendHealth.get(name)
  const breaker = scope.breakers.get(name)
  if (breaker === undefined) throw new Error(`no circuit breaker for service ${name}`)
  const metrics = scope.gatewayMetrics
  const budget = new RetryBudget()
  const maxRetries = service.retry.maxRetries
  const bodyLimit = scope.config.bodyLimit

  /** Called by reply-from after every attempt: record it, then decide whether to retry. */
  function afterAttempt (request: FastifyRequest, reply: FastifyReply, ctx: AttemptContext): number | null {
    const state = request.proxyAttempt as ProxyAttempt
    const { err, res } = ctx
    if (err != null && isBodyLimitError(err)) {
      // The client sent too much: not the backend's failure, so no outcome on the breaker.
      state.permit?.release()
      return null
    }
    metrics.backendRequest(name)
    let failed: boolean
    let retryable: boolean
    if (err != null) {
      failed = true
      retryable = CONNECTION_ERRORS.has(err.code ?? '')
      if (CONNECT_FAILURES.has(err.code ?? '')) health.markFailed(state.backend, 'connection failed')
    } else {
      const code = res?.statusCode ?? 502
      failed = code >= 500
      retryable = isRetryableStatus(code)
    }
    if (failed) {
      metrics.backendError(name)
      state.permit?.failure()
    } else {
      state.permit?.success()
    }
    if (!failed || !retryable || state.retries >= maxRetries || !state.replayable) return null
    if (reply.sent || request.raw.destroyed || !isIdempotent(request.method)) return null
    if (!budget.tryAcquire()) return null
    // Retries stop when the breaker opens: a retry is an attempt like any other (SPEC §8).
    const permit = breaker!.acquire()
    if (permit === null) return null
    state.permit = permit
    const delay = retryDelay(state.retries, service.retry, res?.headers['retry-after'])
    state.retries++
    metrics.retry(name)
    if (res != null) res.stream.on('error', noop).resume() // drain the discarded response
    const next = balancer.pick((i) => health.usable(i), state.backend)
    if (next !== state.backend) {
      state.backend = next
      const url = new URL(backends[next].url + ctx.req.url.pathname)
      ctx.req.url = url
      ctx.req.headers.host = url.host
    }
    return Math.max(1, delay)
  }

  function rewriteRequestHeaders (request: FastifyRequest, headers: Record<string, string | string[] | undefined>) {
    for (const h of HOP_BY_HOP_REQUEST) delete headers[h]
    const te = headers.te
    if (te !== undefined) {
      if (typeof te === 'string' && /(^|,)\s*trailers\s*(,|;|$)/i.test(te)) headers.te = 'trailers'
      else delete headers.te
    }
    if (request.method === 'GET' || request.method === 'HEAD') delete headers['content-length']
    // Gateway credentials never reach a backend; a non-gateway Bearer token does (SPEC §4, §5).
    delete headers['x-api-key']
    const auth = headers.authorization
    if (typeof auth === 'string' && /^bearer\s+gw_/i.test(auth)) delete headers.authorization
    // Identity headers are the gateway's alone: set after reply-from stripped Connection-listed
    // names, so a client cannot remove or forge them (RELIABILITY BI-18).
    delete headers['x-consumer-id']
    delete headers['x-consumer-name']
    const consumer = request.consumer
    if (consumer != null) {
      headers['x-consumer-id'] = consumer.id
      headers['x-consumer-name'] = consumer.name
    }
    const peer = request.raw.socket.remoteAddress ?? ''
    const xff = headers['x-forwarded-for']
    headers['x-forwarded-for'] = xff === undefined || xff === '' ? peer : `${String(xff)}, ${peer}`
    headers['x-forwarded-proto'] = request.protocol
    headers['x-forwarded-host'] = request.raw.headers.host ?? ''
    headers['x-real-ip'] = request.ip
    headers['x-request-id'] = request.id
    return headers
  }

  function rewriteHeaders (headers: Record<string, string | string[] | undefined>, request: FastifyRequest) {
    const state = request.proxyAttempt
    if (state !== null && countExceeds(headers, MAX_HEADER_COUNT)) {
      // A flood of response headers is no valid answer to relay (RELIABILITY FT-08).
      state.badResponse = true
      return {}
    }
    const connection = headers.connection
    if (typeof connection === 'string') {
      for (const token of connection.split(',')) delete headers[token.trim().toLowerCase()]
    }
    for (const h of HOP_BY_HOP_RESPONSE) delete headers[h]
    for (const h of BACKEND_LIMIT_HEADERS) delete headers[h]
    if (state !== null && state.retries > 0) headers['x-retry-count'] = String(state.retries)
    return headers
  }

  function onResponse (request: FastifyRequest, reply: FastifyReply, res: { stream: Readable }) {
    if (request.proxyAttempt?.badResponse === true) {
      res.stream.destroy() // the connection is not reused
      reply.send(new BadGateway())
      return
    }
    res.stream.once('error', () => {
      // Headers were sent: the client sees a cut body and a closed connection (FT-05).
      metrics.backendError(name)
      request.log.warn({ event: 'upstream_reset_after_headers', service: name }, 'upstream response ended early')
    })
    reply.send(res.stream)
  }

  function onError (reply: FastifyReply, { error }: { error: Error & { code?: string, cause?: Error & { code?: string } } }) {
    const request = reply.request
    if (isBodyLimitError(error)) {
      reply.header('connection', 'close')
      reply.send(new PayloadTooLarge(String(bodyLimit)))
      return
    }
    const code = error.cause?.code ?? error.code ?? ''
    const state = request.proxyAttempt
    if (state !== null && state.retries > 0) reply.header('x-retry-count', String(state.retries))
    const timedOut = TIMEOUTS.has(code) || TIMEOUTS.has(error.code ?? '')
    request.log.warn({ event: timedOut ? 'upstream_timeout' : code.includes('TLS') || code.includes('CERT') ? 'upstream_tls_error' : 'upstream_error', service: name, code }, 'upstream attempt failed')
    reply.send(timedOut ? new GatewayTimeout() : new BadGateway())
  }

  async function handler (request: FastifyRequest, reply: FastifyReply, dest: string, options: Record<string, unknown>) {
    const permit = breaker!.acquire()
    if (permit === null) {
      reply.header('retry-after', String(breaker!.retryAfterSeconds()))
      throw new CircuitOpen()
    }
    const state: ProxyAttempt = { backend: request.proxyAttempt?.backend ?? 0, permit, retries: 0, replayable: true, badResponse: false }
    request.proxyAttempt = state
    budget.recordRequest()

    const opts: Record<string, unknown> = {
      ...options,
      timeout: service.timeoutMs,
      retryDelay: (ctx: AttemptContext) => afterAttempt(request, reply, ctx)
    }
    const body = request.body as Readable | undefined
    if (body != null && request.method !== 'GET' && request.method !== 'HEAD') {
      const length = Number(request.headers['content-length'] ?? NaN)
      if (length > bodyLimit) {
        permit.release()
        reply.header('connection', 'close')
        throw new PayloadTooLarge(String(bodyLimit))
      }
      // A body is replayed only from a bounded copy; a larger or chunked one streams through
      // once and its request is not retried (SPEC §8).
      if (maxRetries > 0 && isIdempotent(request.method) && length <= REPLAY_LIMIT) {
        try {
          opts.body = await readAll(body)
        } catch (err) {
          permit.release()
          throw err
        }
        opts.contentType = request.headers['content-type'] ?? 'application/octet-stream'
      } else {
        state.replayable = false
        if (Number.isNaN(length)) {
          // Chunked: count it against the limit on the way through, in coalesced writes.
          const bounded = new BoundedBody(bodyLimit)
          pipeline(body, bounded, noop)
          request.body = bounded
        }
      }
    }
    return reply.from(dest, opts)
  }

  await scope.register(httpProxy, {
    upstream: '',
    prefix: service.prefix === '/' ? '' : service.prefix,
    rewritePrefix: service.stripPrefix ? '' : service.prefix,
    httpMethods: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    config: { service, metricPath: service.prefix },
    undici: agent as never,
    disableRequestLogging: true,
    internalRewriteLocationHeader: service.stripPrefix,
    handler: handler as never,
    replyOptions: {
      getUpstream (request: FastifyRequest) {
        const backend = balancer.pick((i) => health.usable(i))
        request.proxyAttempt = { backend, permit: null, retries: 0, replayable: true, badResponse: false }
        return backends[backend].url
      },
      rewriteRequestHeaders: rewriteRequestHeaders as never,
      rewriteHeaders: rewriteHeaders as never,
      onResponse: onResponse as never,
      onError: onError as never
    }
  } as never)
}

/** Whether `headers` has more than `max` names, without allocating a key array per response. */
function countExceeds (headers: object, max: number): boolean {
  let n = 0
  for (const name in headers) if (Object.hasOwn(headers, name) && ++n > max) return true
  return false
}

/** The body-limit error of BoundedBody, however undici wrapped it. */
function isBodyLimitError (err: Error & { code?: string, cause?: unknown }): boolean {
  let e: unknown = err
  for (let i = 0; i < 3 && e != null; i++) {
    if ((e as { code?: string }).code === 'GW_PAYLOAD_TOO_LARGE') return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

function readAll (stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.once('end', () => resolve(Buffer.concat(chunks)))
    stream.once('error', reject)
  })
}

function noop (): void {}
