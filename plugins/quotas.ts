// API-key quotas (docs/policies.md#quotas): `limit` admitted requests per calendar hour, day or
// month of the key's time zone. The hook runs last in the proxy's admit, after authentication
// and the rate limit, so only requests that passed both are counted; a request over the quota is
// not counted either. Every answer that passed through it carries X-Quota-Limit,
// X-Quota-Remaining and X-Quota-Reset (Unix seconds of the period's end); the refused one gets 429
// with Retry-After until the period ends. A request of such a key that the rate limiter refused
// (never counted) carries the fields of the last count this instance saw for the key in the current
// period, if it saw one: the quota is reported on every answer without a store call per refusal.
//
// The counters are the store's (store.quotas): exact across instances on Redis, in gateway.db for
// the embedded store. The store is never waited on longer than RATE_LIMIT_STORE_TIMEOUT_MS; while
// it fails, RATE_LIMIT_FAIL_MODE decides as for the rate limiter: `open` counts in this process
// (from the last shared count this instance saw; the quota holds per instance, without X-Quota-*
// fields, which would describe a count other instances do not share), `closed` answers 503. After a failure the store is left alone for a
// second, then one request at a time asks it again.
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { LruMap } from 'toad-cache'
import promClient from '@platformatic/prom-client'
import type { ServiceConfig } from '../lib/config.js'
import { QuotaExceeded, QuotaUnavailable } from '../lib/errors.js'
import { MemoryQuotas } from './store/index.js'
import type { Quota, QuotaResult } from './store/types.js'
import type { QuotaStep } from './services/index.js'

export interface QuotaUsage {
  limit: number
  used: number
  remaining: number
  resets_at: string
  period: Quota['period']
  timezone: string
}

export interface Quotas {
  /** The step of a service's route; it acts only on requests of a key with a quota. */
  hookFor (service: ServiceConfig): QuotaStep
  /** The current period's count of key `id`, whose quota is `quota`. */
  usage (id: string, quota: Quota): Promise<QuotaUsage>
}

declare module 'fastify' {
  interface FastifyInstance {
    quotas: Quotas
  }
}

export interface QuotasOptions {
  /** After a store failure, count in process this long before asking the store again. */
  storeRetryMs?: number
}

const WARN_EVERY_MS = 10_000

/** X-Quota-* fields of one decision. */
export function quotaHeaders (r: QuotaResult): Record<string, string> {
  return {
    'x-quota-limit': String(r.limit),
    'x-quota-remaining': String(Math.max(0, r.limit - r.used)),
    'x-quota-reset': String(Math.ceil(r.end / 1000))
  }
}

export default fp<QuotasOptions>(async function quotas (app, opts) {
  const { store, config, gatewayMetrics: metrics } = app
  const { failMode, storeTimeoutMs } = config.rateLimit
  const storeRetryMs = opts.storeRetryMs ?? 1000
  const fallback = new MemoryQuotas()
  const exceeded = new promClient.Counter({
    name: 'gateway_quota_exceeded_total',
    help: 'Requests refused (429) because their API key used its quota for the period',
    registers: [metrics.registry]
  })
  const failOpen = new promClient.Counter({
    name: 'gateway_quota_fail_open_total',
    help: 'Requests counted in process because the quota store failed (RATE_LIMIT_FAIL_MODE=open)',
    registers: [metrics.registry]
  })
  /** The last shared count seen per key (by id), for answers refused before the quota step. */
  const lastSeen = new LruMap<QuotaResult>(10_000)
  /** While the store is failing: when it may be asked again, and whether a request is asking. */
  let retryAt = 0
  let probing = false
  let lastWarn = -Infinity

  function storeFailed (err: unknown): void {
    metrics.storeError('quota')
    const now = Date.now()
    retryAt = now + storeRetryMs
    if (now - lastWarn >= WARN_EVERY_MS) {
      lastWarn = now
      app.log.warn({ err, event: 'quota_store_unavailable', failMode },
        failMode === 'open' ? 'quota store unavailable: counting quotas per instance' : 'quota store unavailable: answering 503 to keys with a quota')
    }
  }

  const consumeSync = store.quotas.consumeSync?.bind(store.quotas)

  /** The store's decision, or undefined when it failed, timed out or is being left alone. */
  function fromStore (id: string, quota: Quota, answer: (r: QuotaResult | undefined) => void): void {
    if (consumeSync !== undefined) {
      // In process (SQLite): no timer, and a failure (a locked or broken file) is one like any other.
      let r: QuotaResult
      try {
        r = consumeSync(id, quota)
      } catch (err) {
        storeFailed(err)
        return answer(undefined)
      }
      return answer(r)
    }
    const down = retryAt !== 0
    if (down && (probing || Date.now() < retryAt)) return answer(undefined)
    if (down) probing = true
    let settled = false
    const settle = (r: QuotaResult | undefined, err?: unknown): void => {
      if (settled) return
      settled = true
      if (down) probing = false
      if (r === undefined) storeFailed(err)
      else if (retryAt !== 0) {
        retryAt = 0
        app.log.info({ event: 'quota_store_reachable' }, 'quota store reachable again')
      }
      answer(r)
    }
    const timer = setTimeout(() => setImmediate(() => settle(undefined, new Error(`quota store did not answer within ${storeTimeoutMs} ms`))), storeTimeoutMs)
    store.quotas.consume(id, quota).then((r) => { clearTimeout(timer); settle(r) }, (err: unknown) => { clearTimeout(timer); settle(undefined, err) })
  }

  function decide (reply: FastifyReply, r: QuotaResult, withHeaders: boolean, done: (err?: Error) => void): void {
    if (withHeaders) reply.headers(quotaHeaders(r))
    if (r.allowed) return done()
    exceeded.inc()
    reply.header('retry-after', String(Math.max(1, Math.ceil((r.end - Date.now()) / 1000))))
    done(new QuotaExceeded())
  }

  function quotaHook (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
    const consumer = request.consumer
    if (consumer === null || consumer.quota === null) return done()
    const quota = consumer.quota
    fromStore(consumer.id, quota, (r) => {
      if (r !== undefined) {
        lastSeen.set(consumer.id, r)
        return decide(reply, r, true, done)
      }
      if (failMode === 'closed') return done(new QuotaUnavailable())
      failOpen.inc()
      // Counting starts from the last shared count this instance saw, not from zero.
      const seen = lastSeen.get(consumer.id)
      if (seen !== undefined && Date.now() < seen.end) fallback.atLeast(consumer.id, seen.start, seen.used)
      decide(reply, fallback.consumeSync(consumer.id, quota), false, done)
    })
  }

  function refused (request: FastifyRequest, reply: FastifyReply): void {
    const consumer = request.consumer
    if (consumer === null || consumer.quota === null) return
    const seen = lastSeen.get(consumer.id)
    if (seen !== undefined && Date.now() < seen.end) reply.headers(quotaHeaders(seen))
  }

  const step: QuotaStep = { check: quotaHook as onRequestHookHandler, refused }

  async function usage (id: string, quota: Quota): Promise<QuotaUsage> {
    const r = await store.quotas.usage(id, quota)
    return {
      limit: r.limit,
      used: r.used,
      remaining: Math.max(0, r.limit - r.used),
      resets_at: new Date(r.end).toISOString(),
      period: quota.period,
      timezone: quota.timezone
    }
  }

  app.decorate('quotas', { hookFor: () => step, usage } satisfies Quotas)
}, { name: 'quotas', fastify: '5.x', dependencies: ['config', 'store', 'gateway-metrics', 'api-keys'] })
