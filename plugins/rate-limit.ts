// Token-bucket rate limiting (docs/proxying.md#rate-limits), an onRequest hook that each service scope adds after the
// API-key hook. Buckets live in the store (memory or Redis); while the store is unreachable the
// hook either falls back to this instance's own buckets (`open`) or answers 503 (`closed`), and
// never waits longer than RATE_LIMIT_STORE_TIMEOUT_MS for it.
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import createError from '@fastify/error'
import { performance } from 'node:perf_hooks'
import type { ServiceConfig } from '../lib/config.js'
import { RateLimited, RateLimitUnavailable } from '../lib/errors.js'
import { fillMs } from '../lib/token-bucket.js'
import { MemoryBuckets } from './store/index.js'
import type { BucketResult } from './store/types.js'

export interface RateLimitDecorator {
  /** The hook for one service's scope; it runs after the api-keys hook set `request.consumer`. */
  hookFor (service: ServiceConfig): onRequestHookHandler
}

declare module 'fastify' {
  interface FastifyInstance {
    rateLimiter: RateLimitDecorator
  }
}

export interface RateLimitOptions {
  /** After a store failure, serve from the fallback this long before asking the store again. */
  storeRetryMs?: number
  /** At most one outage warning per this many ms (docs/reliability.md, FT-09: one per 10 s). */
  warnEveryMs?: number
}

/** The part of the api-keys plugin's `Consumer` this hook reads. */
export interface ConsumerLimits {
  id: string
  rateLimit: number | null
  burst: number | null
}

/** A failure domain the store failed in: served from the fallback until retryAt, then probed. */
interface Outage {
  retryAt: number
  probing: boolean
}

const StoreTimeout = createError('GW_RATE_LIMIT_STORE_TIMEOUT', 'The rate-limit store did not answer within %s ms', 503)

/**
 * Precedence, field by field: the key's `rate_limit`/`burst` when set, else the service's
 * `rateLimit`, else RATE_LIMIT_RPM/RATE_LIMIT_BURST. A key with only `rate_limit` set keeps the
 * service's (or default) burst.
 */
export function limitsFor (consumer: ConsumerLimits | null, service: ServiceConfig, defaults: { rpm: number, burst: number }): { rpm: number, burst: number } {
  return { rpm: rpmFor(consumer, service, defaults), burst: burstFor(consumer, service, defaults) }
}

// A zero would divide by zero in the bucket math; the admin API should never store one.
function rpmFor (consumer: ConsumerLimits | null, service: ServiceConfig, defaults: { rpm: number }): number {
  return Math.max(1, consumer?.rateLimit ?? service.rateLimit?.rpm ?? defaults.rpm)
}

function burstFor (consumer: ConsumerLimits | null, service: ServiceConfig, defaults: { burst: number }): number {
  return Math.max(1, consumer?.burst ?? service.rateLimit?.burst ?? defaults.burst)
}

/**
 * `k:<keyId>` for a valid key, else `ip:<client ip>`. A service with its own `rateLimit` gets its
 * own buckets (`<service>:k:…`); all other services share one bucket per client.
 */
export function bucketId (service: ServiceConfig, consumer: ConsumerLimits | null, ip: string): string {
  const who = consumer === null ? `ip:${ip}` : `k:${consumer.id}`
  return service.rateLimit === null ? who : `${service.name}:${who}`
}

/**
 * X-RateLimit-* (the seed's fields) and draft-ietf-httpapi-ratelimit-headers-11's RateLimit-Policy
 * (q = capacity, w = seconds to refill fully) and RateLimit (r = whole tokens left, t = seconds
 * until full). On a 429 `t` is the Retry-After delay instead: with r=0 the "effective window" of
 * §4.1.2 ends when a token exists, and §6 asks that Retry-After not precede its end.
 */
export function rateLimitHeaders (r: BucketResult, rpm: number, nowMs: number): Record<string, string> {
  const fields: Record<string, string> = {}
  writeRateLimitHeaders({ header (name: string, value: string) { fields[name] = value } }, r, rpm, nowMs)
  return fields
}

/** The fields above, set one by one on the reply: no object, no key array per request. */
function writeRateLimitHeaders (reply: { header (name: string, value: string): unknown }, r: BucketResult, rpm: number, nowMs: number): void {
  const t = r.allowed ? Math.ceil(r.resetMs / 1000) : retryAfterSeconds(r)
  const policy = policyFor(r.limit, rpm)
  reply.header('x-ratelimit-limit', policy.limit)
  reply.header('x-ratelimit-remaining', String(r.remaining))
  reply.header('x-ratelimit-reset', String(Math.ceil((nowMs + r.resetMs) / 1000)))
  reply.header('ratelimit-policy', policy.field)
  reply.header('ratelimit', `"default";r=${r.remaining};t=${t}`)
}

// The fields that depend only on the limits, kept for the last limits seen: nearly every request
// of a busy gateway has the same ones.
let lastPolicy = { burst: 0, rpm: 0, limit: '', field: '' }
function policyFor (burst: number, rpm: number): { limit: string, field: string } {
  if (lastPolicy.burst !== burst || lastPolicy.rpm !== rpm) {
    lastPolicy = { burst, rpm, limit: String(burst), field: `"default";q=${burst};w=${Math.max(1, Math.ceil(fillMs(burst, rpm) / 1000))}` }
  }
  return lastPolicy
}

/** Whole seconds until a token exists, at least 1 (RFC 9110 §10.2.3 delay-seconds). */
export function retryAfterSeconds (r: BucketResult): number {
  return Math.max(1, Math.ceil(r.retryAfterMs / 1000))
}

export default fp<RateLimitOptions>(async function rateLimit (fastify, opts) {
  const { store, gatewayMetrics: metrics, config } = fastify
  const { failMode, storeTimeoutMs } = config.rateLimit
  const defaults = { rpm: config.rateLimit.rpm, burst: config.rateLimit.burst }
  const storeRetryMs = opts.storeRetryMs ?? 1000
  const warnEveryMs = opts.warnEveryMs ?? 10_000
  // Per-instance buckets for `open` mode while the store is down (bounded like any MemoryBuckets).
  const fallback = new MemoryBuckets()

  // Store health, per failure domain (store.buckets.domainOf: a Redis Cluster node; a standalone
  // Redis is one domain). After a failure, requests whose bucket is in that domain go straight to
  // the fallback (or 503) for storeRetryMs, then one request at a time probes the store. An outage
  // therefore costs one timeout per probe, not one per request, a paused Redis does not pile up
  // commands that would replay stale takes when it wakes (docs/reliability.md, FT-11), and one
  // failed Cluster master leaves the buckets of the others exact. While no domain is down (the
  // map is empty) a request costs no domain lookup at all.
  const outages = new Map<string, Outage>()
  const domainOf = store.buckets.domainOf?.bind(store.buckets) ?? (() => '')
  /** A domain no request has tried for this long is forgotten (its slots moved elsewhere). */
  const forgetAfterMs = 5 * storeRetryMs
  let lastWarn = -Infinity
  let failuresSinceWarn = 0

  function storeFailed (err: unknown, domain: string): void {
    metrics.storeError('rate_limit')
    const now = performance.now()
    const outage = outages.get(domain)
    if (outage === undefined) outages.set(domain, { retryAt: now + storeRetryMs, probing: false })
    else outage.retryAt = now + storeRetryMs
    failuresSinceWarn++
    if (now - lastWarn >= warnEveryMs) {
      fastify.log.warn({ err, failMode, failures: failuresSinceWarn, ...(domain === '' ? {} : { node: domain }) },
        failMode === 'open'
          ? 'rate-limit store unavailable: limiting with per-instance buckets'
          : 'rate-limit store unavailable: answering 503')
      lastWarn = now
      failuresSinceWarn = 0
    }
  }

  function storeAnswered (domain: string): void {
    if (outages.delete(domain)) fastify.log.info(domain === '' ? {} : { node: domain }, 'rate-limit store reachable again')
  }

  function forgetIdle (now: number): void {
    for (const [domain, outage] of outages) {
      if (!outage.probing && now - outage.retryAt > forgetAfterMs) outages.delete(domain)
    }
  }

  const takeSync = store.buckets.takeSync?.bind(store.buckets)
  const takeLocal = store.buckets.takeLocal?.bind(store.buckets)
  const takeWithin = store.buckets.takeWithin?.bind(store.buckets)

  /**
   * Asks the store for a take; `answer` gets the result, or undefined when the store is (or just
   * turned out to be) unavailable for this bucket.
   */
  function fromStore (id: string, burst: number, rpm: number, answer: (r: BucketResult | undefined) => void): void {
    let probing: string | undefined // the domain this take probes, when it is down
    if (outages.size > 0) {
      const now = performance.now()
      forgetIdle(now)
      const domain = domainOf(id)
      const outage = outages.get(domain)
      if (outage !== undefined) {
        if (outage.probing || now < outage.retryAt) return answer(undefined)
        outage.probing = true
        probing = domain
      }
    }
    let settled = false
    const settle = (result: BucketResult | undefined, err?: unknown): void => {
      if (settled) return
      settled = true
      if (result === undefined) storeFailed(err, probing ?? domainOf(id))
      else if (outages.size > 0) storeAnswered(probing ?? domainOf(id))
      if (probing !== undefined) {
        const outage = outages.get(probing)
        if (outage !== undefined) outage.probing = false
      }
      answer(result)
    }
    if (takeWithin !== undefined) {
      // The store keeps one timer per script call for all the takes it carries.
      takeWithin(id, burst, rpm, storeTimeoutMs, (result, err) => {
        settle(result, result === undefined ? (err ?? new StoreTimeout(storeTimeoutMs)) : undefined)
      })
      return
    }
    // Expired after the poll phase: when the event loop was stalled, an answer that arrived in
    // time is waiting in the socket, and it must win over the timer that fired in the same turn.
    const timer = setTimeout(() => setImmediate(() => settle(undefined, new StoreTimeout(storeTimeoutMs))), storeTimeoutMs)
    const cancel = (): void => { clearTimeout(timer) }
    store.buckets.take(id, burst, rpm).then((result) => { cancel(); settle(result) }, (err: unknown) => { cancel(); settle(undefined, err) })
  }

  /** The decision on a take, and its headers. */
  function decide (reply: FastifyReply, done: (err?: Error) => void, id: string, burst: number, rpm: number, stored: BucketResult | undefined): void {
    let result = stored
    if (result !== undefined) {
      writeRateLimitHeaders(reply, result, rpm, Date.now())
    } else if (failMode === 'open') {
      // No RateLimit fields while failing open: they would describe a bucket other instances
      // do not share (docs/reliability.md, LD-05).
      metrics.rateLimitFailOpen()
      result = fallback.takeSync(id, burst, rpm)
    } else {
      return done(new RateLimitUnavailable())
    }
    if (!result.allowed) {
      metrics.rateLimited()
      reply.header('retry-after', String(retryAfterSeconds(result)))
      return done(new RateLimited())
    }
    done()
  }

  function hookFor (service: ServiceConfig): onRequestHookHandler {
    return function rateLimitHook (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
      const consumer = (request as { consumer?: ConsumerLimits | null }).consumer ?? null
      const rpm = rpmFor(consumer, service, defaults)
      const burst = burstFor(consumer, service, defaults)
      const id = bucketId(service, consumer, request.ip)
      // An in-process store answers at once.
      if (takeSync !== undefined) return decide(reply, done, id, burst, rpm, takeSync(id, burst, rpm))
      // A busy bucket's token from this instance's lease: decided now, no network wait
      // (docs/performance.md#the-redis-bucket-lease). Not while any store domain is down, so an
      // outage is handled exactly as it always was.
      if (takeLocal !== undefined && outages.size === 0) {
        const local = takeLocal(id, burst, rpm)
        if (local !== undefined) return decide(reply, done, id, burst, rpm, local)
      }
      fromStore(id, burst, rpm, (stored) => { decide(reply, done, id, burst, rpm, stored) })
    }
  }

  fastify.decorate('rateLimiter', { hookFor })
  fastify.addHook('onClose', async () => { await fallback.close() })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['config', 'store', 'gateway-metrics', 'api-keys'] })
