// The attempt loop (docs/proxying.md, docs/proxying.md#retries-and-circuit-breakers): one Exchange per proxied request, owning every step between the
// route handler and the last byte. It takes the breaker permit of each attempt and settles it on
// every path (success, failure, or release when the outcome is not the backend's: client gone,
// body too large), runs the per-attempt timeout, records each attempt on the breaker, passive
// health and metrics, retries with backoff from the bounded replay copy, and relays the chosen
// response with backpressure. Nothing else in the gateway touches an upstream request.
import type { Readable } from 'node:stream'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { BadGateway, GatewayTimeout, PayloadTooLarge } from '../../lib/errors.js'
import { isIdempotent, isRetryableStatus, retryDelay } from '../../lib/retry-policy.js'
import { CONNECT_FAILURES, CONNECTION_ERRORS } from '../../lib/upstream-errors.js'
import type { BreakerPermit } from '../circuit-breakers.js'
import type { GatewayMetrics } from '../gateway-metrics.js'
import type { RequestEnds } from '../request-end.js'
import type { TraceAttempt, Tracing } from '../tracing/index.js'
import { clientHeaders, countExceeds, MAX_HEADER_COUNT, type UpstreamHeaders } from '../../lib/http-headers.js'
import type { ServiceRoute } from '../services/index.js'

/** What every exchange shares: built once by the plugin. */
export interface ExchangeContext {
  readonly dispatcher: Dispatcher
  readonly metrics: GatewayMetrics
  readonly idleTimeoutMs: number
  /** Where the request's end is reported (a client that left, a relayed response). */
  readonly ends: RequestEnds
  /** Longest a relayed response may wait for the client to take more bytes (CLIENT_SEND_TIMEOUT_MS). */
  readonly sendTimeoutMs: number
  /** Each attempt's `traceparent` and CLIENT span (docs/tracing.md). */
  readonly tracing: Tracing
}

/** Receives a relayed response's body as it streams to the client (docs/caching.md). */
export interface ResponseSink {
  chunk (buf: Buffer): void
  end (): void
  /** The body will not complete: the client left or the backend cut it. */
  abort (): void
}

/**
 * What another plugin may attach to a proxied request (`request.proxyTap`) to see its response
 * without owning the relay: the response cache stores bodies through it and answers instead of an
 * error from a stale entry (docs/caching.md).
 */
export interface ResponseTap {
  /** The head about to be relayed (the tap may set reply headers): a sink for its body, or null. */
  onHead (status: number, headers: Record<string, string | string[] | undefined>): ResponseSink | null
  /** The proxy is about to answer a 5xx (a backend's, a timeout, a connection error, an open breaker): true when the tap answered instead. */
  onFailure (status: number): boolean
  /** Fields the tap adds to the upstream request before the first attempt (a cache's validators). */
  upstream? (headers: UpstreamHeaders): void
  /** The backend answered 304 to what `upstream` asked: true when the tap answered instead of relaying it. */
  onNotModified? (headers: Record<string, string | string[] | undefined>): boolean
}

const ATTEMPT_TIMEOUT = Object.assign(new Error('upstream attempt timed out'), { code: 'GW_ATTEMPT_TIMEOUT' })
const CLIENT_GONE = Object.assign(new Error('client went away'), { code: 'GW_CLIENT_GONE' })

type ErrorWithCode = Error & { code?: string, cause?: unknown }

/** One upstream attempt: undici's dispatch handler. A discarded attempt only drains. */
class Attempt implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null
  timer: NodeJS.Timeout | null = null
  /** Why the gateway aborted it before undici handed over a controller. */
  pendingAbort: Error | null = null
  timedOut = false
  /** The response is being thrown away (a retry follows, or nobody wants it any more). */
  discard = false
  /** The response is being relayed to the client. */
  relaying = false
  /** The attempt's CLIENT span (null unless recorded) and response status (0: none yet). */
  trace: TraceAttempt | null = null
  status = 0
  /** Where the relayed body is copied as well (request.proxyTap), or null. */
  sink: ResponseSink | null = null

  constructor (readonly exchange: Exchange, readonly backend: number, readonly permit: BreakerPermit) {}

  abort (reason: Error): void {
    if (this.controller !== null) this.controller.abort(reason)
    else this.pendingAbort = reason
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.pendingAbort !== null) controller.abort(this.pendingAbort)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return
    this.status = statusCode
    if (this.discard) return
    this.exchange.onResponseStart(this, controller, statusCode, headers)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.relaying) return
    if (this.sink !== null) this.sink.chunk(chunk)
    if (!this.exchange.reply.raw.write(chunk)) this.exchange.stalled(controller)
  }

  onResponseEnd (): void {
    this.traced(null)
    if (!this.relaying) return
    if (this.sink !== null) this.sink.end()
    this.exchange.reply.raw.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.traced(err)
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.discard) return
    this.exchange.onAttemptError(this, err as ErrorWithCode)
  }

  /** Every dispatched attempt ends here once: its response complete, or an error (undici calls one of the two). */
  traced (err: Error | null): void {
    this.exchange.tracing.attemptEnded(this.trace, this.status, err)
    this.trace = null
  }
}

function onAttemptTimeout (attempt: Attempt): void {
  attempt.timer = null
  const owed = attempt.controller === null ? 0 : attempt.exchange.backendTimeOwed()
  if (owed > 0) {
    // Connected and sending a streamed body, or done only recently: a slow client is not a slow
    // backend. The backend's full timeout starts when the body's last byte is sent; the client's
    // own request timeout bounds the upload.
    attempt.timer = setTimeout(onAttemptTimeout, owed, attempt)
    return
  }
  attempt.timedOut = true
  attempt.abort(ATTEMPT_TIMEOUT)
}

function onSendTimeout (exchange: Exchange): void {
  exchange.sendTimedOut()
}

export class Exchange {
  readonly #ctx: ExchangeContext
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly #route: ServiceRoute
  readonly #log: FastifyBaseLogger
  readonly #method: string
  readonly #path: string
  readonly #headers: UpstreamHeaders
  #body: Buffer | Readable | null = null
  #replayable = true
  #current: Attempt | null = null
  #nextPermit: BreakerPermit | null = null
  #retryTimer: NodeJS.Timeout | null = null
  #retries = 0
  /** Armed while the client is not taking the relayed body (between a full write and 'drain'). */
  #sendTimer: NodeJS.Timeout | null = null
  /** When a streamed body's last byte was handed to undici (performance.now()). */
  #uploadEndedAt = 0
  #clientGone = false
  #settled = false

  constructor (ctx: ExchangeContext, request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, path: string, headers: UpstreamHeaders) {
    this.#ctx = ctx
    this.request = request
    this.reply = reply
    this.#route = route
    this.#log = request.log
    this.#method = request.raw.method as string
    this.#path = path
    this.#headers = headers
  }

  get retries (): number { return this.#retries }
  get tracing (): Tracing { return this.#ctx.tracing }
  get timeoutMs (): number { return this.#route.service.timeoutMs }

  /**
   * How much of the attempt timeout the backend is still owed on account of a streamed body: all
   * of it while the body is being read from the client, the rest of it once the body has ended.
   */
  backendTimeOwed (): number {
    const body = this.#body
    if (body === null || Buffer.isBuffer(body)) return 0
    if (!body.readableEnded) return this.timeoutMs
    return Math.ceil(this.#uploadEndedAt + this.timeoutMs - performance.now())
  }

  /**
   * Sends the first attempt under `permit`. `body` is the request body: a Buffer (the replay copy),
   * a stream (sent once, never retried) or null.
   */
  start (permit: BreakerPermit, body: Buffer | Readable | null, replayable: boolean): void {
    this.#body = body
    this.#replayable = replayable
    if (body !== null && !Buffer.isBuffer(body)) body.once('end', () => { this.#uploadEndedAt = performance.now() })
    this.#route.budget.recordRequest()
    this.reply.raw.once('close', () => this.#onClientClose())
    this.#send(permit)
  }

  #send (permit: BreakerPermit): void {
    const route = this.#route
    const previous = this.#current
    const backend = route.balancer.pick(route.usable, previous === null ? -1 : previous.backend)
    const target = route.backends[backend]
    const attempt = new Attempt(this, backend, permit)
    this.#current = attempt
    this.#headers.host = target.host
    attempt.trace = this.#ctx.tracing.attemptStarted(this.request, this.#retries, target, this.#headers)
    attempt.timer = setTimeout(onAttemptTimeout, route.service.timeoutMs, attempt)
    this.#ctx.dispatcher.dispatch({
      origin: target.origin,
      path: this.#path,
      method: this.#method,
      headers: this.#headers,
      body: this.#body,
      // Connect + response head are bounded by the attempt timer; a streamed body only by silence.
      headersTimeout: 0,
      bodyTimeout: this.#ctx.idleTimeoutMs
    }, attempt)
  }

  onResponseStart (attempt: Attempt, controller: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (attempt.timer !== null) {
      clearTimeout(attempt.timer)
      attempt.timer = null
    }
    if (attempt !== this.#current || this.#settled) {
      attempt.discard = true
      controller.abort(CLIENT_GONE)
      return
    }
    const name = this.#route.name
    const metrics = this.#ctx.metrics
    metrics.backendRequest(name)
    if (status >= 500) {
      metrics.backendError(name)
      attempt.permit.failure()
      if (isRetryableStatus(status) && this.#mayRetry()) {
        attempt.discard = true // drained, so the connection stays usable
        this.#retryAfter(headers['retry-after'])
        return
      }
    } else {
      attempt.permit.success()
    }
    if (countExceeds(headers, MAX_HEADER_COUNT)) {
      // A flood of response headers is no valid answer to relay.
      attempt.discard = true
      controller.abort(CLIENT_GONE)
      this.#fail(new BadGateway())
      return
    }
    const tap = this.request.proxyTap
    if (tap !== null) {
      if ((status >= 500 && tap.onFailure(status)) || (status === 304 && tap.onNotModified?.(headers) === true)) {
        attempt.discard = true // drained; the tap answered
        this.#settled = true
        return
      }
      attempt.sink = tap.onHead(status, headers)
    }
    this.#settled = true
    attempt.relaying = true
    const service = this.#route.service
    const head = clientHeaders(headers, this.reply, service.stripPrefix && service.prefix !== '/' ? service.prefix : null, this.#route.responseHeaders)
    this.#ctx.ends.mark(this.request, 'relayed')
    this.reply.hijack()
    this.reply.raw.writeHead(status, head)
  }

  /**
   * The client's socket took no more of the relayed body: the backend is paused until it drains. A
   * client that does not drain within sendTimeoutMs (nginx's send_timeout: the longest wait between
   * two successful writes) is cut, which ends the exchange as a client abort. One timer per stall,
   * none while writes succeed.
   */
  stalled (controller: Dispatcher.DispatchController): void {
    controller.pause()
    if (this.#sendTimer !== null) return // already waiting for this drain
    this.#sendTimer = setTimeout(onSendTimeout, this.#ctx.sendTimeoutMs, this)
    this.reply.raw.once('drain', () => {
      this.#clearSendTimer()
      controller.resume()
    })
  }

  sendTimedOut (): void {
    this.#sendTimer = null
    this.#log.info({ event: 'client_send_timeout', service: this.#route.name, timeout_ms: this.#ctx.sendTimeoutMs }, 'client stopped reading the response')
    // Closing the socket ends the exchange the way any client that left does (#onClientClose).
    this.reply.raw.destroy()
  }

  #clearSendTimer (): void {
    if (this.#sendTimer !== null) {
      clearTimeout(this.#sendTimer)
      this.#sendTimer = null
    }
  }

  onAttemptError (attempt: Attempt, err: ErrorWithCode): void {
    const route = this.#route
    const metrics = this.#ctx.metrics
    if (attempt.relaying) {
      attempt.sink?.abort()
      // Headers were sent: the client sees a cut body and a closed connection.
      if (this.#clientGone) return
      metrics.backendError(route.name)
      this.#log.warn({ event: 'upstream_reset_after_headers', service: route.name, code: err.code }, 'upstream response ended early')
      this.reply.raw.destroy()
      return
    }
    if (attempt !== this.#current || this.#settled || this.#clientGone) {
      attempt.permit.release()
      return
    }
    if (isBodyLimitError(err)) {
      // The client sent too much: not the backend's failure.
      attempt.permit.release()
      this.reply.header('connection', 'close')
      this.#fail(new PayloadTooLarge(String(this.request.server.config.bodyLimit)))
      return
    }
    metrics.backendRequest(route.name)
    metrics.backendError(route.name)
    attempt.permit.failure()
    const code = errorCode(err)
    if (attempt.timedOut) {
      this.#log.warn({ event: 'upstream_timeout', service: route.name }, 'upstream attempt timed out')
      this.#fail(new GatewayTimeout())
      return
    }
    if (CONNECT_FAILURES.has(code)) route.health.markFailed(attempt.backend, 'connection failed')
    if (CONNECTION_ERRORS.has(code) && this.#mayRetry()) {
      this.#retryAfter(undefined)
      return
    }
    const tls = code.includes('TLS') || code.includes('CERT')
    this.#log.warn({ event: tls ? 'upstream_tls_error' : 'upstream_error', service: route.name, code }, 'upstream attempt failed')
    this.#fail(new BadGateway())
  }

  /** Whether another attempt may be made; if so its breaker permit is already taken. */
  #mayRetry (): boolean {
    const route = this.#route
    if (this.#retries >= route.service.retry.maxRetries || !this.#replayable || this.#clientGone) return false
    if (!isIdempotent(this.#method) || !route.budget.tryAcquire()) return false
    // Retries stop when the breaker opens: a retry is an attempt like any other (docs/proxying.md#retries-and-circuit-breakers).
    const permit = route.breaker.acquire()
    if (permit === null) return false
    this.#nextPermit = permit
    return true
  }

  #retryAfter (retryAfterHeader: string | string[] | undefined): void {
    const delay = retryDelay(this.#retries, this.#route.service.retry, retryAfterHeader)
    this.#retries++
    this.request.proxyRetries = this.#retries
    // On the reply from now on: a relayed answer copies the reply's fields, an error carries them.
    this.reply.header('x-retry-count', String(this.#retries))
    this.#ctx.metrics.retry(this.#route.name)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null
      const permit = this.#nextPermit as BreakerPermit
      this.#nextPermit = null
      this.#send(permit)
    }, Math.max(1, delay))
  }

  #fail (err: Error): void {
    this.#settled = true
    if (this.reply.sent) return
    if (this.request.proxyTap?.onFailure((err as { statusCode?: number }).statusCode ?? 502) === true) return
    this.reply.send(err)
  }

  /** The response's socket closed: the client left unless the response had finished. */
  #onClientClose (): void {
    this.#clearSendTimer()
    const res = this.reply.raw
    if (res.writableFinished) return
    this.#clientGone = true
    if (this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer)
      this.#retryTimer = null
    }
    this.#nextPermit?.release()
    this.#nextPermit = null
    const attempt = this.#current
    if (attempt !== null) {
      attempt.sink?.abort()
      if (attempt.timer !== null) clearTimeout(attempt.timer)
      attempt.permit.release() // a no-op once the attempt had an outcome
      attempt.abort(CLIENT_GONE)
    }
    // Fastify runs onRequestAbort only while the request body was unread; the rest is ours.
    if (this.request.raw.aborted !== true) this.#ctx.ends.clientGone(this.request)
  }
}

function errorCode (err: ErrorWithCode): string {
  const cause = err.cause as ErrorWithCode | undefined
  return cause?.code ?? err.code ?? ''
}

/** The body-limit error of BoundedBody, however undici wrapped it. */
function isBodyLimitError (err: ErrorWithCode): boolean {
  let e: unknown = err
  for (let i = 0; i < 3 && e != null; i++) {
    if ((e as { code?: string }).code === 'GW_PAYLOAD_TOO_LARGE') return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}
