// The response cache's storage contract (docs/caching.md#stores), shared by the embedded store
// (store-memory.ts: process memory, an LRU bounded in bytes) and the Redis store (store-redis.ts:
// entries shared by every instance, with their TTL). Both pass the one contract suite in
// test/plugins/cache/store.contract.ts.
import type CachePolicy from 'http-cache-semantics'

/** One stored response: one variant (the values of the request fields its `Vary` names) of a URL. */
export interface CacheEntry {
  /** The RFC 9111 state of the response (http-cache-semantics' CachePolicy.toObject()). */
  readonly policy: CachePolicy.CachePolicyObject
  readonly status: number
  /** The backend's fields as relayed to a client, before the gateway's own (request id, rate limit). */
  readonly headers: Record<string, string | string[]>
  readonly body: Buffer
  /** Which variant of the URL this is (policy.ts `variantOf`); '' when the response has no `Vary`. */
  readonly variant: string
  /**
   * Epoch ms after which the store drops it: the end of its stale-if-error window, or later for an
   * entry with a validator, kept past its freshness to be revalidated (docs/caching.md#revalidation).
   */
  readonly expiresAt: number
  /** Epoch ms until which it may answer instead of an error (freshness plus stale-if-error). */
  readonly staleIfErrorUntil: number
}

/**
 * Keys are `<service>:<path and query>` (policy.ts `cacheKey`): a purge finds a service's entries,
 * and a path prefix within it, from the key alone.
 */
export interface CacheStore {
  readonly kind: 'embedded' | 'redis'
  /** Every live variant stored under `key` (none: []). Rejects when the store cannot answer. */
  get (key: string): Promise<CacheEntry[]>
  /**
   * What `get` would answer when the store knows it without I/O (the embedded store always; the
   * Redis store from its near copy), else undefined. A lookup that can be answered at once then
   * costs no promise and no extra turn of the event loop.
   */
  peek (key: string): CacheEntry[] | undefined
  /** Stores `entry` under `key`, replacing the entry of the same variant. */
  put (key: string, entry: CacheEntry): Promise<void>
  /** Drops every variant of `key`. */
  delete (key: string): Promise<void>
  /**
   * Drops every entry (service null), a service's, or those of a service whose path starts with
   * `prefix` on a segment boundary. Resolves with how many keys were dropped.
   */
  purge (service: string | null, prefix: string | null): Promise<number>
  /** Bytes the cache holds in this process: the embedded store's entries, the Redis store's near copies. */
  bytes (): number | null
  close (): Promise<void>
}

/**
 * What a store shared by several instances adds (the Redis store): one fetch per missing URL
 * across the fleet, and purges heard by every instance (docs/caching.md#request-coalescing).
 */
export interface FleetCoordination {
  /** Whether the shared store answers now; when not, the cache steps aside. */
  readonly available: boolean
  /** Takes the fetch lock of `key` for `ttlMs`: a token, or null when another instance holds it. */
  lock (key: string, ttlMs: number): Promise<string | null>
  /** Gives the lock back (if still ours) and wakes the instances waiting for `key`. */
  unlock (key: string, token: string): Promise<void>
  /** Resolves when `key` may have changed (a fill reported, or a short poll interval passed). */
  changed (key: string): Promise<void>
  /** Whether anyone still holds the fetch lock of `key`. */
  locked (key: string): Promise<boolean>
  /**
   * `key`'s entries as the shared store holds them now, past this instance's near copy: a waiter
   * must not take its own earlier copy of "nothing" for the answer once the fetch it waited for is
   * over (the fill's message may still be on its way).
   */
  look (key: string): Promise<CacheEntry[]>
  /** Called for every purge made by any instance, this one included. */
  onPurge (listener: (service: string | null, prefix: string | null) => void): void
}

/** Splits a key back into its service and its path (the query string dropped). */
export function keyParts (key: string): { service: string, path: string } {
  const colon = key.indexOf(':')
  const rest = key.slice(colon + 1)
  const q = rest.indexOf('?')
  return { service: key.slice(0, colon), path: q === -1 ? rest : rest.slice(0, q) }
}

/** Whether no entry has passed its expiresAt (a loop: no closure, nothing allocated per hit). */
export function allLive (entries: CacheEntry[], now: number): boolean {
  for (const e of entries) if (e.expiresAt <= now) return false
  return true
}

/** Whether `key` is one a purge of (`service`, `prefix`) drops. */
export function purgeMatches (key: string, service: string | null, prefix: string | null): boolean {
  if (service === null) return true
  const parts = keyParts(key)
  if (parts.service !== service) return false
  if (prefix === null || prefix === '/') return true
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
  return parts.path === p || parts.path.startsWith(p + '/')
}
