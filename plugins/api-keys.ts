// API-key authentication (docs/proxying.md, docs/admin-api.md#api-keys) and the key operations the admin API uses.
//
// Hot path: the hook finds the gateway key (X-API-Key or `Authorization: Bearer gw_…`, parsed by
// lib/credentials.ts), checks format + checksum without I/O, then answers from an
// in-process cache. A verified key is trusted for `cacheTtlMs` (5 s) and refreshed in the
// background before that, so no request waits on the store in the steady state. The TTL is also
// the "verified within the last few seconds" grace of docs/admin-api.md#api-keys: when the store is unreachable a key
// older than that gets 503 — never fail open. Revocation and deletion reach every instance through
// `store.keys.onInvalidate` (Redis pub/sub) at once; the TTL bounds staleness if that channel drops.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { LruMap } from 'toad-cache'
import { RecentMap } from '../lib/recent-map.js'
import type { ServiceConfig } from '../lib/config.js'
import { generateApiKey, newKeyId, parseApiKey } from '../lib/api-key-format.js'
import { findCredential } from '../lib/credentials.js'
import { canonicalTimeZone } from '../lib/quota-period.js'
import { AmbiguousCredentials, InvalidApiKey, MissingApiKey, RateLimited, ServiceForbidden, StoreUnavailable } from '../lib/errors.js'
import type { ApiKeyRecord, Quota, StoredApiKey } from './store/types.js'

/** A verified JWT's identity toward the backend (plugins/jwt/, docs/jwt.md). */
export interface TokenIdentity {
  /** The consumer claim (`sub`), header-safe: what X-Consumer-Id carries. */
  subject: string
  issuer: string
  /** JWT_FORWARD_TOKEN: whether the backend receives the Authorization field. */
  forward: boolean
}

export interface Consumer {
  /** Bucket and log identity: the key id, or `jwt:<iss>:<sub>`. */
  id: string
  name: string
  rateLimit: number | null
  burst: number | null
  services: string[] | null
  /** The key's quota (docs/policies.md#quotas), counted by plugins/quotas.ts; null for none. */
  quota: Quota | null
  /** null for an API key. */
  token: TokenIdentity | null
}

export interface NewApiKey {
  name: string
  rate_limit?: number | null
  burst?: number | null
  services?: string[] | null
  expires_at?: string | null
  quota?: { limit: number, period: Quota['period'], timezone?: string } | null
}

export interface ApiKeys {
  /** The onRequest hook of one service's scope. */
  hookFor (service: ServiceConfig): onRequestHookHandler
  /** Stores a new key; the raw key exists only in the returned value. */
  create (input: NewApiKey): Promise<{ record: ApiKeyRecord, rawKey: string }>
  list (): Promise<ApiKeyRecord[]>
  get (id: string): Promise<ApiKeyRecord | null>
  revoke (id: string): Promise<boolean>
  delete (id: string): Promise<boolean>
}

declare module 'fastify' {
  interface FastifyInstance {
    apiKeys: ApiKeys
  }
  interface FastifyRequest {
    /** The key's identity when a valid key was sent; null when anonymous. */
    consumer: Consumer | null
  }
}

export interface ApiKeysOptions {
  /** How long a key verified by the store is trusted without asking again (and the outage grace). */
  cacheTtlMs?: number
  /** How long "no such key" is remembered; keep it short so a key made elsewhere works at once. */
  negativeTtlMs?: number
  /** Bound of each cache (valid keys, unknown keys). */
  maxEntries?: number
  /** Bound of one store lookup. */
  lookupTimeoutMs?: number
  /**
   * Unknown keys (no record in the store) per client IP per minute before further unknown keys
   * answer 429 instead of 401 (docs/reliability.md, SC-08). Known keys are never throttled.
   */
  maxInvalidPerMinute?: number
}

interface Entry {
  /** null: the key exists but is revoked or expired, or does not exist. */
  consumer: Consumer | null
  /** The store has a record of this key (false: an unknown key, the only kind a guess produces). */
  known: boolean
  /** Key expiry in epoch ms (Infinity when none). */
  expiresAtMs: number
  verifiedAt: number
  ttl: number
  refreshing: boolean
}

const KEY_CHALLENGE = 'Key realm="gateway"'
const TOUCH_EVERY_MS = 60_000
const INVALID_WINDOW_MS = 60_000
const STORE_LOG_EVERY_MS = 10_000

function toConsumer (key: StoredApiKey): Consumer {
  return Object.freeze({
    id: key.id,
    name: key.name,
    rateLimit: key.rate_limit,
    burst: key.burst,
    services: key.services === null ? null : Object.freeze([...key.services]) as string[],
    quota: key.quota === null ? null : Object.freeze({ ...key.quota }),
    token: null
  })
}

/** The record as the admin API shows it: an explicit allow-list, so the hash can never leak. */
export function publicRecord (k: ApiKeyRecord): ApiKeyRecord {
  return {
    id: k.id,
    name: k.name,
    rate_limit: k.rate_limit,
    burst: k.burst,
    services: k.services,
    active: k.active,
    created_at: k.created_at,
    expires_at: k.expires_at,
    last_used_at: k.last_used_at,
    quota: k.quota
  }
}

function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`store lookup timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

async function apiKeysPlugin (fastify: FastifyInstance, opts: ApiKeysOptions): Promise<void> {
  const { config, store, gatewayMetrics: metrics } = fastify
  const ttlMs = opts.cacheTtlMs ?? 5000
  const negativeTtlMs = opts.negativeTtlMs ?? 1000
  const maxEntries = opts.maxEntries ?? 10_000
  const lookupTimeoutMs = opts.lookupTimeoutMs ?? 1000
  const maxInvalid = opts.maxInvalidPerMinute ?? 100

  // Bounded by maxEntries, least recently used evicted first (a flood of random keys or client
  // addresses cannot grow them). `inflight` is bounded by the lookups running at once.
  const valid = new LruMap<Entry>(maxEntries) // by hash: keys found in the store (active or not)
  // By hash: when the store said "no such key". Such an answer is used for negativeTtlMs only, so it
  // is kept only about that long: a steady stream of forged keys must not fill memory up to the
  // bound and keep it (lib/recent-map.ts).
  const unknown = new RecentMap<number>(negativeTtlMs, maxEntries)
  // By raw key: the hash of a key the store knows. A consumer sends the same key on every request,
  // and the format check, CRC-32 and SHA-256 were ~3% of a keyed request's CPU (docs/performance.md).
  // Only keys found in the store get in, so well-formed forgeries cannot fill it; whether a key is
  // usable is still read from `valid` (by hash) on every request, so a revocation applies as before.
  const hashes = new LruMap<string>(maxEntries)
  const inflight = new Map<string, Promise<Entry>>()
  const touchedAt = new LruMap<number>(maxEntries) // by key id
  const unknownByIp = new LruMap<{ count: number, resetAt: number }>(maxEntries)
  let invalidations = 0
  let lastStoreLog = 0

  store.keys.onInvalidate((hash) => {
    invalidations++
    // '*' = the invalidation channel was interrupted: anything cached may be stale.
    if (hash === '*') {
      valid.clear()
      unknown.clear()
    } else {
      valid.delete(hash)
    }
  })

  function entryFor (key: StoredApiKey | null, now: number): Entry {
    if (key === null) return { consumer: null, known: false, expiresAtMs: Infinity, verifiedAt: now, ttl: negativeTtlMs, refreshing: false }
    const expiresAtMs = key.expires_at === null ? Infinity : Date.parse(key.expires_at)
    const usable = key.active && !(expiresAtMs <= now)
    return { consumer: usable ? toConsumer(key) : null, known: true, expiresAtMs, verifiedAt: now, ttl: ttlMs, refreshing: false }
  }

  /** One store lookup per hash at a time; the result is cached unless an invalidation raced it. */
  function lookup (hash: string): Promise<Entry> {
    const running = inflight.get(hash)
    if (running !== undefined) return running
    const epoch = invalidations
    const p = withTimeout(store.keys.findByHash(hash), lookupTimeoutMs).then((key) => {
      const now = Date.now()
      const entry = entryFor(key, now)
      if (epoch === invalidations) {
        if (key === null) {
          valid.delete(hash)
          unknown.set(hash, now)
        } else {
          unknown.delete(hash)
          valid.set(hash, entry)
        }
      }
      return entry
    }).finally(() => inflight.delete(hash))
    inflight.set(hash, p)
    return p
  }

  function storeFailed (err: unknown): void {
    metrics.storeError('keys.findByHash')
    const now = Date.now()
    if (now - lastStoreLog >= STORE_LOG_EVERY_MS) {
      lastStoreLog = now
      fastify.log.warn({ err, event: 'api_key_store_unavailable' }, 'API key lookup failed; keyed requests get 503 until the store answers')
    }
  }

  function touch (consumer: Consumer, now: number): void {
    const last = touchedAt.get(consumer.id)
    if (last !== undefined && now - last < TOUCH_EVERY_MS) return
    touchedAt.set(consumer.id, now)
    store.keys.touch(consumer.id, new Date(now).toISOString()).catch((err: unknown) => {
      metrics.storeError('keys.touch')
      fastify.log.warn({ err, keyId: consumer.id }, 'could not record API key use')
    })
  }

  /** Counts one unknown key from `ip`; returns the ms left in its window once over the limit, else 0. */
  function countUnknown (ip: string, now: number): number {
    let w = unknownByIp.get(ip)
    if (w === undefined || w.resetAt <= now) {
      w = { count: 0, resetAt: now + INVALID_WINDOW_MS }
      unknownByIp.set(ip, w)
    }
    w.count++
    return w.count > maxInvalid ? w.resetAt - now : 0
  }

  /** Revoked, expired, malformed or ambiguous: 401, and not a guess, so not counted. */
  function invalid (reply: FastifyReply): FastifyError {
    reply.header('www-authenticate', KEY_CHALLENGE)
    return new InvalidApiKey()
  }

  /**
   * A well-formed key the store has no record of: what guessing produces (docs/reliability.md,
   * SC-08). Past `maxInvalid` of them from one address in a minute they get 429 instead of 401.
   * Only this answer is throttled: every key is still looked up, so a valid key sent from the same
   * address (a shared NAT) is served — it cannot be guessed, and refusing it would let one client
   * lock every other one behind that address out.
   */
  function unknownKey (request: FastifyRequest, reply: FastifyReply, now: number): FastifyError {
    const throttledMs = countUnknown(request.ip, now)
    if (throttledMs === 0) return invalid(reply)
    reply.header('retry-after', String(Math.ceil(throttledMs / 1000)))
    return new RateLimited()
  }

  /** Decides a request from a verified entry: the consumer, or the error to answer with. */
  function decide (entry: Entry, service: ServiceConfig, request: FastifyRequest, reply: FastifyReply, now: number): FastifyError | null {
    const consumer = entry.consumer
    if (consumer === null && !entry.known) return unknownKey(request, reply, now)
    if (consumer === null || entry.expiresAtMs <= now) return invalid(reply)
    if (consumer.services !== null && !consumer.services.includes(service.name)) return new ServiceForbidden()
    request.consumer = consumer
    touch(consumer, now)
    return null
  }

  function hookFor (service: ServiceConfig): onRequestHookHandler {
    const required = config.apiKeyRequired || service.auth === 'required'
    const skip = service.auth === 'none'

    return function apiKeyHook (request, reply, done) {
      // Credentials are only read here: the proxy's header policy strips them (plugins/proxy).
      if (skip) return done()
      const credential = findCredential(request.headers, request.raw.rawHeaders)
      if (credential.kind === 'ambiguous') {
        reply.header('www-authenticate', KEY_CHALLENGE)
        return done(new AmbiguousCredentials())
      }
      if (credential.kind === 'none') {
        if (!required) return done()
        reply.header('www-authenticate', KEY_CHALLENGE)
        return done(new MissingApiKey())
      }

      const raw = credential.raw
      let hash = hashes.get(raw)
      const remembered = hash !== undefined
      if (hash === undefined) {
        const parsed = parseApiKey(raw)
        if (!parsed.ok) return done(invalid(reply))
        hash = parsed.hash
      }
      const now = Date.now()

      const cached = valid.get(hash)
      if (cached !== undefined && now - cached.verifiedAt < cached.ttl) {
        if (!remembered && cached.known) hashes.set(raw, hash)
        // Refresh ahead of expiry so busy keys never wait on the store.
        if (!cached.refreshing && now - cached.verifiedAt >= cached.ttl * 0.8) {
          cached.refreshing = true
          lookup(hash).catch(storeFailed)
        }
        const err = decide(cached, service, request, reply, now)
        return err === null ? done() : done(err)
      }
      const missAt = unknown.get(hash)
      if (missAt !== undefined && now - missAt < negativeTtlMs) return done(unknownKey(request, reply, now))

      lookup(hash).then((entry) => {
        if (!remembered && entry.known) hashes.set(raw, hash)
        const err = decide(entry, service, request, reply, Date.now())
        if (err === null) done()
        else done(err)
      }, (err: unknown) => {
        storeFailed(err)
        done(new StoreUnavailable())
      })
    }
  }

  /** Drops a key from this instance's cache at once (other instances hear it via onInvalidate). */
  function forget (id: string): void {
    invalidations++
    // Read through `items`, not get(): get() would mark every cached key as just used.
    const stale: string[] = []
    for (const [hash, entry] of valid.items) if (entry.value.consumer?.id === id) stale.push(hash)
    valid.deleteMany(stale)
    touchedAt.delete(id)
  }

  async function create (input: NewApiKey): Promise<{ record: ApiKeyRecord, rawKey: string }> {
    const { raw, hash } = generateApiKey()
    const key: StoredApiKey = {
      id: newKeyId(),
      name: input.name,
      rate_limit: input.rate_limit ?? null,
      burst: input.burst ?? null,
      services: input.services ?? null,
      active: true,
      created_at: new Date().toISOString(),
      expires_at: input.expires_at == null ? null : new Date(input.expires_at).toISOString(),
      last_used_at: null,
      quota: input.quota == null ? null : { limit: input.quota.limit, period: input.quota.period, timezone: canonicalTimeZone(input.quota.timezone ?? 'UTC') },
      hash
    }
    await store.keys.create(key)
    unknown.delete(hash)
    return { record: publicRecord(key), rawKey: raw }
  }

  fastify.decorateRequest('consumer', null)
  fastify.decorate('apiKeys', {
    hookFor,
    create,
    list: async () => (await store.keys.list()).map(publicRecord),
    get: async (id: string) => {
      const k = await store.keys.get(id)
      return k === null ? null : publicRecord(k)
    },
    revoke: async (id: string) => {
      const ok = await store.keys.revoke(id)
      forget(id)
      return ok
    },
    delete: async (id: string) => {
      const ok = await store.keys.delete(id)
      forget(id)
      // A key made again can never have this id; the counter only costs space (docs/policies.md#quotas).
      if (ok) store.quotas.forget(id).catch(() => {})
      return ok
    }
  } satisfies ApiKeys)
}

export default fp(apiKeysPlugin, { name: 'api-keys', fastify: '5.x', dependencies: ['config', 'store', 'gateway-metrics'] })
