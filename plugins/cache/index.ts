// The response cache (docs/caching.md): a shared HTTP cache (RFC 9111) for the GET and HEAD
// requests of every service with a `cache` object. It runs as a preHandler, after the proxy's
// admit (authentication, scopes, rate limiting: a hit is charged a token and needs a credential
// like any request) and before its handler takes a concurrency slot or a breaker permit:
//   hit    a fresh stored response answers at once (Age, Cache-Status; 304 to a matching
//          conditional request)
//   miss   one request per URL goes to the backend (per instance, and across instances on Redis);
//          the others wait for its entry. The proxy streams the response to the client and hands
//          the body to this plugin's sink (request.proxyTap, plugins/proxy/exchange.ts), which
//          stores it unless it is over maxEntryBytes or not storable (policy.ts)
//   error  a 5xx, a timeout, a connection error or an open breaker is answered with the stale
//          entry instead, within its stale-if-error window
// A successful POST, PUT, PATCH or DELETE drops the entries of its URL; the admin API purges
// (routes/admin/cache.ts). With Redis down the cache steps aside: requests go to the backend.
import type { FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type CachePolicy from 'http-cache-semantics'
import type { CacheConfig } from '../../lib/config.js'
import { clientHeaders, type UpstreamHeaders } from '../../lib/http-headers.js'
import type { CacheResult } from '../gateway-metrics.js'
import type { ResponseSink, ResponseTap } from '../proxy/exchange.js'
import { withoutKeyParams } from '../proxy/paths.js'
import type { ServiceRoute } from '../services/index.js'
import type { RedisStore } from '../store/index.js'
import { ageOf, cacheKey, neverStored, notModified, NOTHING_FOUND, policyRequest, select, storageDecision, variantOf, type PolicyRequest, type Selection } from './policy.js'
import { MemoryCacheStore } from './store-memory.js'
import { RedisCacheStore } from './store-redis.js'
import { purgeMatches, type CacheEntry, type CacheStore, type FleetCoordination } from './types.js'

/** The cache's name in Cache-Status (RFC 9211 section 2). */
export const CACHE_NAME = 'gateway'

export interface ResponseCache {
  /** Drops every entry (service null), a service's, or a path prefix of a service's; on every instance. */
  purge (service: string | null, prefix: string | null): Promise<number>
  readonly store: CacheStore
}

declare module 'fastify' {
  interface FastifyInstance {
    responseCache: ResponseCache
  }
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/**
 * How long a URL whose response could not be stored is fetched without coalescing (Varnish's
 * "hit-for-miss"): requests for it would otherwise queue behind each other's fetch for nothing.
 */
const UNCACHEABLE_MS = 5000
/** URLs remembered as uncacheable, at most; the memory is cleared when it fills. */
const UNCACHEABLE_MAX = 10_000
/** Reply fields the 304 of RFC 9110 section 15.4.5 keeps from the stored response. */
const NOT_MODIFIED_FIELDS = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified']
/** No reply: clientHeaders with this applies the response header policy and adds nothing. */
const NO_REPLY = { getHeaders: () => ({}) } as unknown as FastifyReply

/** The fetch of one URL in progress on this instance: the others wait for it to settle. */
class Flight {
  readonly settled: Promise<void>
  readonly startedAt = Date.now()
  #resolve!: () => void
  /** A purge covered this URL while it was being fetched: what comes back is not stored. */
  purged = false
  constructor (readonly key: string) {
    this.settled = new Promise((resolve) => { this.#resolve = resolve })
  }

  settle (): void { this.#resolve() }
}

export default fp(async function responseCache (app) {
  const { config, gatewayMetrics: metrics, store } = app
  const shared = store.kind === 'redis' ? new RedisCacheStore({ ...(store as RedisStore).connections, nearMaxBytes: config.cacheMaxBytes }) : null
  const cacheStore: CacheStore = shared ?? new MemoryCacheStore(config.cacheMaxBytes)
  const fleet: FleetCoordination | null = shared
  const flights = new Map<string, Flight>()
  /** Keys whose last response was not storable, with the time until which they skip coalescing. */
  const uncacheable = new Map<string, number>()
  function markUncacheable (key: string): void {
    if (uncacheable.size >= UNCACHEABLE_MAX) uncacheable.clear()
    uncacheable.set(key, Date.now() + UNCACHEABLE_MS)
  }
  metrics.cacheBytes(() => cacheStore.bytes())

  function markPurged (service: string | null, prefix: string | null): void {
    for (const flight of flights.values()) if (purgeMatches(flight.key, service, prefix)) flight.purged = true
  }
  // Every instance hears every purge (this one too): fetches in progress there store nothing.
  fleet?.onPurge(markPurged)

  async function purge (service: string | null, prefix: string | null): Promise<number> {
    markPurged(service, prefix)
    return await cacheStore.purge(service, prefix)
  }
  app.decorate('responseCache', { purge, store: cacheStore })
  app.addHook('onClose', async () => { await cacheStore.close() })

  function count (route: ServiceRoute, result: CacheResult): void {
    metrics.cacheResult(route.name, result)
  }

  /** The answer from a stored response: its fields, then the gateway's own (request id, rate limit, CORS). */
  function answer (request: FastifyRequest, reply: FastifyReply, entry: CacheEntry, policy: CachePolicy, status: string): void {
    const conditional = request.headers['if-none-match'] !== undefined || request.headers['if-modified-since'] !== undefined
    const notModifiedAnswer = conditional && notModified(request.headers, entry)
    const fields = entry.headers
    for (const name in fields) {
      // Fastify sets the length of the body it sends; a 304 keeps only the validators and caching fields.
      if (name === 'content-length' || (notModifiedAnswer && !NOT_MODIFIED_FIELDS.includes(name))) continue
      const own = name === 'vary' ? reply.getHeader('vary') : undefined
      // The gateway's own Vary (CORS: Origin) joins the backend's, as on a relayed response.
      reply.header(name, own === undefined ? fields[name] : `${String(fields[name])}, ${String(own)}`)
    }
    reply.header('age', ageOf(policy))
    reply.header('cache-status', status)
    app.requestEnds.mark(request, 'relayed')
    if (notModifiedAnswer) reply.code(304).send()
    else reply.code(entry.status).send(entry.body)
  }

  function bypass (route: ServiceRoute, reply: FastifyReply): void {
    reply.header('cache-status', `${CACHE_NAME}; fwd=bypass`)
    count(route, 'bypass')
  }

  /**
   * Looks the request up: true when it was answered here, false when it goes on to the backend. A
   * lookup the store answers without I/O (the embedded store, a near copy of Redis) and that waits
   * for no other fetch is decided at once, with no promise: a hit or a miss costs no extra turn.
   */
  function lookup (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, settings: CacheConfig): boolean | Promise<boolean> {
    // Range requests are not the cache's (206 is never stored).
    if (request.headers.range !== undefined) {
      bypass(route, reply)
      return false
    }
    if (fleet !== null && !fleet.available) {
      bypass(route, reply)
      return false
    }
    const key = keyOf(request, route)
    const known = cacheStore.peek(key)
    if (known !== undefined) return decide(request, reply, route, settings, key, known)
    return cacheStore.get(key).then(
      (entries) => decide(request, reply, route, settings, key, entries),
      (err: Error) => unavailable(request, reply, route, err)
    )
  }

  function unavailable (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, err: Error): false {
    request.log.debug({ event: 'cache_unavailable', service: route.name, reason: err.message }, 'response cache unavailable: request goes to the backend')
    bypass(route, reply)
    return false
  }

  /** What the stored entries of `key` mean for this request: answered, or on to the backend (perhaps after another fetch). */
  function decide (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, settings: CacheConfig, key: string, entries: CacheEntry[]): boolean | Promise<boolean> {
    // The policy's view of the request (a copy of its fields) only when an entry could answer it.
    const req = entries.length === 0 ? null : policyRequestOf(request, key)
    let found: Selection
    try {
      found = req === null ? NOTHING_FOUND : select(entries, req)
    } catch (err) {
      return unavailable(request, reply, route, err as Error)
    }
    if (found.fresh !== null) {
      count(route, 'hit')
      answer(request, reply, found.fresh.entry, found.fresh.policy, `${CACHE_NAME}; hit`)
      return true
    }
    const fwd = found.fallback === null ? 'miss' : 'stale'
    // A HEAD is answered from a GET's entry but never fills one (it has no body to store).
    if (request.raw.method !== 'GET') {
      request.proxyTap = new Fill(request, reply, route, settings, key, req, found.fallback, fwd, null)
      return false
    }
    const now = Date.now()
    const pass = uncacheable.get(key)
    if (pass !== undefined) {
      if (pass > now) {
        request.proxyTap = new Fill(request, reply, route, settings, key, req, found.fallback, fwd, null)
        return false
      }
      uncacheable.delete(key)
    }
    let ahead = flights.get(key)
    // A safety net: a fetch is never waited for longer than its service's timeout, even if some
    // path failed to settle it.
    if (ahead !== undefined && ahead.startedAt + route.service.timeoutMs < now) {
      release(ahead)
      ahead = undefined
    }
    if (ahead !== undefined) return afterFetchAhead(request, reply, route, settings, key, found, fwd, ahead, now + route.service.timeoutMs)
    const flight = new Flight(key)
    flights.set(key, flight)
    if (fleet !== null) return fetchOnceInFleet(request, reply, route, settings, key, found, fwd, flight, fleet, now + route.service.timeoutMs)
    request.proxyTap = new Fill(request, reply, route, settings, key, req, found.fallback, fwd, { flight, token: null })
    return false
  }

  /** Another request of this instance is fetching this URL: wait for it (bounded), then look again. */
  async function afterFetchAhead (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, settings: CacheConfig, key: string, found: Selection, fwd: string, ahead: Flight, deadline: number): Promise<boolean> {
    await settledBefore(ahead.settled, deadline)
    if (await answeredFromStore(request, reply, route, key)) return true
    request.proxyTap = new Fill(request, reply, route, settings, key, null, found.fallback, fwd, null)
    return false
  }

  /** This instance fetches the URL, unless another instance already is: then wait for its entry. */
  async function fetchOnceInFleet (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, settings: CacheConfig, key: string, found: Selection, fwd: string, flight: Flight, fleet: FleetCoordination, deadline: number): Promise<boolean> {
    let token: string | null = null
    try {
      token = await fleet.lock(key, route.service.timeoutMs)
      // Another instance is fetching it: wait for its entry until the lock goes or time runs out.
      while (token === null && Date.now() < deadline) {
        await fleet.changed(key)
        if (await answeredFromStore(request, reply, route, key, true)) {
          release(flight)
          return true
        }
        if (await fleet.locked(key)) continue
        token = await fleet.lock(key, route.service.timeoutMs)
        // The other fetch may have stored its entry and let go between our look and our lock.
        if (token !== null && await answeredFromStore(request, reply, route, key, true)) {
          release(flight, token)
          return true
        }
      }
    } catch {
      // Redis went away meanwhile: this instance fetches on its own.
    }
    request.proxyTap = new Fill(request, reply, route, settings, key, null, found.fallback, fwd, { flight, token })
    return false
  }

  /**
   * A second look after waiting for another request's fetch: true when its entry answered. RFC 9211
   * calls such a request collapsed (a forward request shared); it cost no backend request, so the
   * metrics count it as a hit. After waiting for another instance (`shared`) the look reads Redis
   * itself: this instance's near copy may still say "nothing" until the fill's message arrives.
   */
  async function answeredFromStore (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, key: string, shared = false): Promise<boolean> {
    let found: Selection
    try {
      found = select(await (shared && fleet !== null ? fleet.look(key) : cacheStore.get(key)), policyRequestOf(request, key))
    } catch {
      return false
    }
    if (found.fresh === null) return false
    count(route, 'hit')
    answer(request, reply, found.fresh.entry, found.fresh.policy, `${CACHE_NAME}; fwd=miss; collapsed`)
    return true
  }

  function release (flight: Flight, token: string | null = null): void {
    if (flights.get(flight.key) === flight) flights.delete(flight.key)
    flight.settle()
    if (token !== null && fleet !== null) fleet.unlock(flight.key, token).catch(() => {})
  }

  /**
   * The tap of a GET or HEAD that goes to the backend: stores the response through a sink when it
   * may (GET only), answers from the fallback entry instead of an error within its window, and
   * settles the fetch it leads (if any) on every path — stored, not storable, failed, client gone.
   */
  class Fill implements ResponseTap {
    #done = false
    #stale = false
    /** The stale entry the backend is asked to confirm (If-None-Match / If-Modified-Since), or null. */
    #revalidating: Selection['fallback'] = null

    constructor (
      readonly request: FastifyRequest,
      readonly reply: FastifyReply,
      readonly route: ServiceRoute,
      readonly settings: CacheConfig,
      readonly key: string,
      /** The policy's view of the request, when the lookup built it (else built when a response may be stored). */
      public req: PolicyRequest | null,
      readonly fallback: Selection['fallback'],
      readonly fwd: string,
      readonly lead: { flight: Flight, token: string | null } | null
    ) {
      reply.header('cache-status', `${CACHE_NAME}; fwd=${fwd}`)
      // A stale entry with a validator is revalidated (RFC 9111 section 4.3): a 304 refreshes it and
      // its body answers. Not when the client sent conditions of its own: those are the backend's to judge.
      if (fallback !== null && request.raw.method === 'GET' && request.headers['if-none-match'] === undefined &&
        request.headers['if-modified-since'] === undefined && (fallback.entry.headers.etag !== undefined || fallback.entry.headers['last-modified'] !== undefined)) {
        this.#revalidating = fallback
      }
      // Whatever happens (a shed, a breaker 503, a client gone before any answer), the request's
      // end settles it (the subscription below). A client that left while this request waited
      // for another fetch has ended already.
      if (reply.raw.closed) this.settle()
    }

    settle (): void {
      if (this.#done) return
      this.#done = true
      count(this.route, this.#stale ? 'stale' : 'miss')
      if (this.lead !== null) release(this.lead.flight, this.lead.token)
    }

    onFailure (status: number): boolean {
      const fallback = this.fallback
      if (status < 500 || fallback === null || fallback.entry.staleIfErrorUntil <= Date.now()) {
        // An error answers this request: nothing will be stored, the waiters need not wait.
        this.settle()
        return false
      }
      this.#stale = true
      answer(this.request, this.reply, fallback.entry, fallback.policy, `${CACHE_NAME}; fwd=${this.fwd}; fwd-status=${status}; detail=stale-if-error`)
      this.settle()
      return true
    }

    upstream (headers: UpstreamHeaders): void {
      const stale = this.#revalidating
      if (stale === null) return
      // The library says which validators a revalidation sends (strong and weak rules included).
      const asked = stale.policy.revalidationHeaders(this.#policyRequest())
      const etag = asked['if-none-match']
      const since = asked['if-modified-since']
      if (etag !== undefined) headers['if-none-match'] = etag
      if (since !== undefined) headers['if-modified-since'] = since
      if (etag === undefined && since === undefined) this.#revalidating = null
    }

    onNotModified (headers: Record<string, string | string[] | undefined>): boolean {
      const stale = this.#revalidating
      if (stale === null || this.lead?.flight.purged === true) return false
      const req = this.#policyRequest()
      // A 304 whose validator does not match the entry confirms nothing, and a client that sent no
      // condition cannot take a 304: the backend failed to answer, as a 502 would say (so the
      // entry's stale-if-error window, the reason it is still kept, answers).
      const revalidated = stale.policy.revalidatedPolicy(req, { status: 304, headers: headers as CachePolicy.Headers })
      if (!revalidated.matches) return this.onFailure(502)
      // The entry's fields, updated by the 304's (RFC 9111 section 4.3.4), and its freshness
      // worked out again by the same rules as a new response's.
      const fields: Record<string, string | string[]> = { ...stale.entry.headers }
      const given = this.#asRelayed(headers)
      for (const name in given) if (name !== 'content-length') fields[name] = given[name]
      const decision = storageDecision(req, stale.entry.status, fields, this.settings)
      const status = `${CACHE_NAME}; fwd=stale; fwd-status=304`
      if (decision === null) {
        // Confirmed, but no longer storable: this answer is the last from the entry.
        answer(this.request, this.reply, { ...stale.entry, headers: fields }, revalidated.policy, status)
        this.settle()
        return true
      }
      const entry: CacheEntry = { ...stale.entry, policy: decision.policy.toObject(), headers: fields, expiresAt: decision.expiresAt, staleIfErrorUntil: decision.staleIfErrorUntil }
      answer(this.request, this.reply, entry, decision.policy, status)
      this.complete(entry)
      return true
    }

    onHead (status: number, headers: Record<string, string | string[] | undefined>): ResponseSink | null {
      this.reply.header('cache-status', `${CACHE_NAME}; fwd=${this.fwd}; fwd-status=${status}`)
      if (this.request.raw.method !== 'GET' || this.lead?.flight.purged === true) return this.#none()
      if (neverStored(status, headers, this.settings)) return this.#notStorable(status)
      const req = this.#policyRequest()
      const decision = storageDecision(req, status, headers, this.settings)
      if (decision === null || Number(headers['content-length']) > this.settings.maxEntryBytes) return this.#notStorable(status)
      const entry = { policy: decision.policy.toObject(), status, headers: this.#asRelayed(headers), variant: variantOf(headers.vary, req.headers), expiresAt: decision.expiresAt, staleIfErrorUntil: decision.staleIfErrorUntil }
      return new BodySink(this, entry)
    }

    /** The policy's view of the request: the lookup's when it built one, else built once here. */
    #policyRequest (): PolicyRequest {
      this.req ??= policyRequestOf(this.request, this.key)
      return this.req
    }

    /** A backend's fields as a client gets them (what an entry keeps): the response header policy, no gateway fields. */
    #asRelayed (headers: Record<string, string | string[] | undefined>): CacheEntry['headers'] {
      return clientHeaders(headers, NO_REPLY, this.route.service.stripPrefix && this.route.prefix !== '/' ? this.route.prefix : null) as CacheEntry['headers']
    }

    /** The URL's answer cannot be stored: its next requests skip coalescing for a while (a 304 says nothing about the URL). */
    #notStorable (status: number): null {
      if (status !== 304) markUncacheable(this.key)
      return this.#none()
    }

    /** Nothing to store: the waiters go to the backend themselves. */
    #none (): null {
      this.settle()
      return null
    }

    tooLarge (): void { markUncacheable(this.key) }

    /** The whole body arrived: stored (unless a purge came meanwhile), then the waiters look again. */
    complete (entry: CacheEntry): void {
      if (this.lead?.flight.purged === true) return this.settle()
      uncacheable.delete(this.key)
      cacheStore.put(this.key, entry).catch((err: Error) => {
        this.request.log.debug({ event: 'cache_store_failed', service: this.route.name, reason: err.message }, 'response not stored')
      }).finally(() => { this.settle() })
    }
  }

  /** Collects a relayed body up to maxEntryBytes; past that it lets go and stores nothing. */
  class BodySink implements ResponseSink {
    #chunks: Buffer[] | null = []
    #length = 0
    constructor (readonly fill: Fill, readonly entry: Omit<CacheEntry, 'body'>) {}

    chunk (buf: Buffer): void {
      if (this.#chunks === null) return
      this.#length += buf.length
      if (this.#length > this.fill.settings.maxEntryBytes) {
        this.fill.tooLarge()
        this.abort()
        return
      }
      this.#chunks.push(buf)
    }

    end (): void {
      const chunks = this.#chunks
      if (chunks === null) return
      this.#chunks = null
      this.fill.complete({ ...this.entry, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, this.#length) })
    }

    abort (): void {
      if (this.#chunks === null) return
      this.#chunks = null
      this.fill.settle()
    }
  }

  /** An unsafe method's tap: a success drops the URL's entries (RFC 9111 section 4.4). */
  class Invalidation implements ResponseTap {
    constructor (readonly request: FastifyRequest, readonly key: string) {}
    onHead (status: number): null {
      if (status < 400) {
        markPurgedKey(this.key)
        cacheStore.delete(this.key).catch((err: Error) => {
          this.request.log.warn({ event: 'cache_invalidation_failed', reason: err.message }, 'cached entries of an updated URL could not be dropped')
        })
      }
      return null
    }

    onFailure (): boolean { return false }
  }

  function markPurgedKey (key: string): void {
    const flight = flights.get(key)
    if (flight !== undefined) flight.purged = true
  }

  const hook: preHandlerHookHandler = function cacheHook (request, reply, done) {
    const route = request.proxyRoute
    // Undefined on the gateway's own routes (registered before the proxy decorates requests).
    if (route == null) return done()
    const settings = route.service.cache
    if (settings === null) return done()
    const method = request.raw.method as string
    if (method === 'GET' || method === 'HEAD') {
      // A WebSocket upgrade (or any other) is a tunnel, not a response to store.
      if (request.headers.upgrade !== undefined) return done()
      const answered = lookup(request, reply, route, settings)
      // Answered here: the reply is sent, the hook chain stops.
      if (answered === true) return
      if (answered === false) return done()
      answered.then((sent) => { if (!sent) done() }, done)
      return
    }
    if (UNSAFE.has(method)) request.proxyTap = new Invalidation(request, keyOf(request, route))
    done()
  }
  app.addHook('preHandler', hook)
  // The end of a request that went to the backend settles its fill (plugins/request-end.ts).
  app.requestEnds.subscribe((request) => {
    const tap = request.proxyTap
    if (tap instanceof Fill) tap.settle()
  })
}, {
  name: 'response-cache',
  fastify: '5.x',
  dependencies: ['config', 'store', 'gateway-metrics', 'request-end']
})

/** The policy's view of a proxied request (policy.ts policyRequest). */
function policyRequestOf (request: FastifyRequest, key: string): PolicyRequest {
  return policyRequest(request.raw.method as string, key, request.headers, request.consumer)
}

/** The cache key of a proxied request: service, gateway path, query without gateway keys. */
function keyOf (request: FastifyRequest, route: ServiceRoute): string {
  const url = request.raw.url as string
  const q = url.indexOf('?')
  if (q === -1) return cacheKey(route.name, request.proxyPath)
  const kept = withoutKeyParams(url.slice(q + 1))
  return cacheKey(route.name, kept === '' ? request.proxyPath : `${request.proxyPath}?${kept}`)
}

/** Waits for `p` until `deadline` (epoch ms), whichever comes first. */
async function settledBefore (p: Promise<void>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now())) })
  try {
    await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
