// The one owner of the end of a request. Every request ends exactly once, here: status, duration
// and outcome are decided in one place, and the consumers (metrics, the access log, and whatever
// observes requests next) subscribe to that one event instead of each hooking the response.
//
// Ways a request ends, and who reports them:
//   Fastify's onResponse           the response finished (relayed, or answered by the gateway)
//   Fastify's onRequestAbort       the client left while its body was still unread
//   clientGone(request)            the client left later (the proxy and the tunnel handshake see it)
//   upgraded(request)              a WebSocket tunnel took the socket over with 101
//   refusedByRouter(request, ...)  Fastify's router refused the URL before any hook ran
//   answeredOnSocket(socket, ...)  Node's parser answered the request in flight itself (a slow
//                                  upload's 408): when its socket closes, that is its status
// See docs/architecture.md (the request path) for where each is called.
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest, onRequestAbortHookHandler, onRequestHookHandler, onResponseHookHandler } from 'fastify'
import fp from 'fastify-plugin'

/**
 * How a request ended: `relayed` a backend's response went to the client; `answered` the gateway
 * answered itself (its own routes, or a refusal: 4xx/5xx of its own); `shed` refused by a
 * concurrency or tunnel cap; `client_gone` the client left first (status 499); `upgraded` a
 * WebSocket tunnel took over (status 101).
 */
export type Outcome = 'relayed' | 'answered' | 'shed' | 'client_gone' | 'upgraded'

/** A consumer of every request's end. Plain arguments, not an object: nothing is allocated per request. */
export type EndListener = (request: FastifyRequest, status: number, durationMs: number, outcome: Outcome) => void

export interface RequestEnds {
  /** Adds a consumer of every request's end; called once per request, in subscription order. */
  subscribe (listener: EndListener): void
  /** Marks how the request is being answered, before it ends (the proxy: `relayed` or `shed`). */
  mark (request: FastifyRequest, outcome: 'relayed' | 'shed'): void
  /** The client left before the response finished, where Fastify will not report it. Idempotent. */
  clientGone (request: FastifyRequest): void
  /** A WebSocket tunnel took the socket over with 101. Idempotent. */
  upgraded (request: FastifyRequest): void
  /**
   * The client error handler answered straight on `socket` (a slow upload's 408 at
   * REQUEST_TIMEOUT_MS): the request in flight there ends with that status, not as a client that left.
   */
  answeredOnSocket (socket: Socket, status: number): void
  /** Fastify's router refused the request before any hook ran; it ends when the answer is sent. */
  refusedByRouter (request: FastifyRequest, reply: FastifyReply, status: number): void
  /** Requests started and not yet ended (shutdown logs, the in-flight gauge). */
  readonly inFlight: number
}

declare module 'fastify' {
  interface FastifyInstance {
    requestEnds: RequestEnds
  }
  interface FastifyRequest {
    /** The bounded route label when a plugin knows it better than the route (the proxy: the service prefix). */
    metricPath: string | null
  }
  interface FastifyContextConfig {
    /** Route label used instead of the route template (the proxy's catch-all: `unmatched`). */
    metricPath?: string
  }
}

/** The single route label shared by every request that matched no route or service. */
export const UNMATCHED_PATH = 'unmatched'

/** Status recorded for a request whose client closed the connection before the response finished. */
export const CLIENT_CLOSED_STATUS = 499

/** Bounded route label (metrics' `path`, the access log's `route`): the service prefix, the route template, or `unmatched`. */
export function routeLabel (request: FastifyRequest): string {
  // Loose check: requests built for router errors carry no decorators at all.
  if (request.metricPath != null) return request.metricPath
  const ro = request.routeOptions
  return ro.config?.metricPath ?? ro.url ?? UNMATCHED_PATH
}

// Per-request fields, declared up front (stable object shapes): performance.now() when the request
// started (0 if onRequest never ran), whether it ended, and the outcome the proxy marked.
const kStart = Symbol('request-end.start')
const kEnded = Symbol('request-end.ended')
const kMark = Symbol('request-end.mark')
type Tracked = FastifyRequest & { [kStart]: number, [kEnded]: boolean, [kMark]: Outcome | null }
const kParserAnswer = Symbol('request-end.parserAnswer')
type MarkedSocket = Socket & { [kParserAnswer]?: number }

export default fp(async function requestEnd (fastify) {
  const listeners: EndListener[] = []
  let inFlight = 0

  fastify.decorateRequest(kStart as unknown as string, 0)
  fastify.decorateRequest(kEnded as unknown as string, false)
  fastify.decorateRequest(kMark as unknown as string, null)
  fastify.decorateRequest('metricPath', null)

  function end (request: Tracked, status: number, elapsedMs: number, outcome: Outcome): void {
    if (request[kEnded]) return
    request[kEnded] = true
    const start = request[kStart]
    if (start > 0) inFlight--
    const durationMs = start > 0 ? performance.now() - start : elapsedMs
    for (let i = 0; i < listeners.length; i++) listeners[i](request, status, durationMs, outcome)
  }

  const onRequest: onRequestHookHandler = (request, _reply, done) => {
    const r = request as Tracked
    if (!r[kEnded] && r[kStart] === 0) {
      r[kStart] = performance.now()
      inFlight++
    }
    done()
  }
  // Every response, including errors sent by hooks that ran before ours.
  const onResponse: onResponseHookHandler = (request, reply, done) => {
    const r = request as Tracked
    end(r, reply.statusCode, reply.elapsedTime, r[kMark] ?? 'answered')
    done()
  }
  // A client that disconnects first gets no onResponse (no 'finish').
  const onRequestAbort: onRequestAbortHookHandler = (request, done) => {
    unfinished(request as Tracked)
    done()
  }
  // The response never finished: the client left (499), unless the parser's answer ended it.
  function unfinished (request: Tracked): void {
    const answered = (request.raw.socket as MarkedSocket | null)?.[kParserAnswer]
    if (answered === undefined) end(request, CLIENT_CLOSED_STATUS, 0, 'client_gone')
    else end(request, answered, 0, 'answered')
  }

  const ends: RequestEnds = {
    subscribe (listener) { listeners.push(listener) },
    mark (request, outcome) { (request as Tracked)[kMark] = outcome },
    clientGone (request) { unfinished(request as Tracked) },
    answeredOnSocket (socket, status) { (socket as MarkedSocket)[kParserAnswer] = status },
    upgraded (request) { end(request as Tracked, 101, 0, 'upgraded') },
    refusedByRouter (request, reply, status) {
      reply.raw.once('finish', () => { end(request as Tracked, status, reply.elapsedTime, 'answered') })
    },
    get inFlight () { return inFlight }
  }
  fastify.decorate('requestEnds', ends)
  fastify.addHook('onRequest', onRequest)
  fastify.addHook('onResponse', onResponse)
  fastify.addHook('onRequestAbort', onRequestAbort)
}, { name: 'request-end', fastify: '5.x' })
