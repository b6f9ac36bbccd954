// The storage contract shared by the embedded (SQLite + memory) and Redis back ends (docs/architecture.md#the-store).
// Both implementations pass the one contract suite in test/plugins/store/contract.ts.
import type { BucketResult } from '../../lib/token-bucket.js'
import type { QuotaPeriodName } from '../../lib/quota-period.js'

/** An API key's quota (docs/policies.md#quotas): `limit` admitted requests per calendar period. */
export interface Quota {
  limit: number
  period: QuotaPeriodName
  /** IANA time zone the period's calendar boundaries are in. */
  timezone: string
}

/** An API key as the admin API shows it: never the hash, never the raw key (docs/admin-api.md#api-keys). */
export interface ApiKeyRecord {
  id: string
  name: string
  rate_limit: number | null
  burst: number | null
  services: string[] | null
  active: boolean
  created_at: string
  expires_at: string | null
  last_used_at: string | null
  /** null: no quota. */
  quota: Quota | null
}

/** What the store keeps: the record plus the SHA-256 (hex) of the raw key. */
export interface StoredApiKey extends ApiKeyRecord {
  hash: string
}

export interface KeyStore {
  /** Persists a new key; resolves only once it is durable (acknowledged = survives kill -9). */
  create (key: StoredApiKey): Promise<void>
  findByHash (hash: string): Promise<StoredApiKey | null>
  get (id: string): Promise<ApiKeyRecord | null>
  list (): Promise<ApiKeyRecord[]>
  /** false when the id is unknown. */
  revoke (id: string): Promise<boolean>
  /** false when the id is unknown. */
  delete (id: string): Promise<boolean>
  /** Records use; callers throttle it to once a minute per key. */
  touch (id: string, at: string): Promise<void>
  /**
   * Called with the hash of a key revoked or deleted by any instance sharing this store
   * (Redis: pub/sub), so in-process caches can drop it within docs/admin-api.md#api-keys's one second. The value
   * `'*'` means "anything may have changed" (the subscriber reconnected): drop every cached key.
   */
  onInvalidate (listener: (hash: string) => void): void
}

/** Everything the rate-limit headers of docs/proxying.md#rate-limits need, from one atomic take. */
export type { BucketResult } from '../../lib/token-bucket.js'

/** How `takeWithin` answers: a result, or undefined and the error (undefined on a timeout). */
export type BucketAnswer = (result: BucketResult | undefined, err?: unknown) => void

export interface BucketStore {
  /** Takes one token from bucket `id` (capacity `burst`, refill `rpm` per minute), atomically. */
  take (id: string, burst: number, rpm: number): Promise<BucketResult>
  /** The same take answered at once, for stores that keep buckets in this process. */
  takeSync? (id: string, burst: number, rpm: number): BucketResult
  /**
   * A take answered at once from tokens this process already holds (a lease on a shared bucket),
   * or undefined: then the caller takes its token from the store.
   */
  takeLocal? (id: string, burst: number, rpm: number): BucketResult | undefined
  /**
   * The take, answered through a callback within timeoutMs: a result, or none and the error
   * (none at all when the time ran out). Saves the caller a promise and a timer per take.
   */
  takeWithin? (id: string, burst: number, rpm: number, timeoutMs: number, answer: BucketAnswer): void
  /**
   * The failure domain of bucket `id`: buckets of one domain become unreachable together (in a
   * Redis Cluster, the node serving the bucket's slot). Absent: every bucket shares one domain.
   */
  domainOf? (id: string): string
  close (): Promise<void>
}

/** One quota decision: the count in the period holding the store's clock's now, and that period. */
export interface QuotaResult {
  allowed: boolean
  /** Requests counted in the period (this one included when allowed). */
  used: number
  limit: number
  /** The period, epoch ms: [start, end). */
  start: number
  end: number
}

/**
 * Quota counters (docs/policies.md#quotas), one per API key, for the period holding the store's
 * own clock's now (the Redis server's on Redis, so instances with skewed clocks agree).
 */
export interface QuotaStore {
  /** Atomically: counts one request when fewer than `quota.limit` are counted, else counts nothing. */
  consume (keyId: string, quota: Quota): Promise<QuotaResult>
  /** The same, answered at once, for stores that count in this process (no timer needed). */
  consumeSync? (keyId: string, quota: Quota): QuotaResult
  /** Reads the count without adding (`allowed`: whether one more would be). */
  usage (keyId: string, quota: Quota): Promise<QuotaResult>
  /** Forgets a deleted key's counter. */
  forget (keyId: string): Promise<void>
}

/** What a reservation answers: whether the attempt may go ahead, the count and the window's rest. */
export interface Reservation {
  allowed: boolean
  /** Attempts counted in the current window (this one included when allowed). */
  count: number
  /** Milliseconds until the window ends. */
  resetMs: number
}

/**
 * Shared fixed-window counter of admin login attempts (docs/admin-api.md#authentication-and-errors). An attempt is reserved before the
 * password is compared and given back when the password was right, so what stays counted are the
 * failures, and however the attempts arrive (pipelined, concurrent, several instances) no more
 * than `max` comparisons are ever in flight or failed in one window.
 */
export interface FailureCounter {
  /**
   * Atomically: when fewer than `max` attempts are counted for `id` in the current window, adds
   * one (opening a `windowMs` window if none is open) and answers allowed; otherwise adds nothing.
   */
  reserve (id: string, max: number, windowMs: number): Promise<Reservation>
  /** Gives back one reserved attempt (the password was right); never below 0, window unchanged. */
  release (id: string): Promise<void>
  /** Reads the count without adding. */
  peek (id: string): Promise<{ count: number, resetMs: number }>
}

/** One service definition as stored (docs/admin-api.md#managing-services): the routes-file entry, JSON. */
export interface StoredService {
  name: string
  definition: Record<string, unknown>
  /** The table version this definition was written at. */
  version: number
  updated_at: string
  /**
   * True when the gateway wrote it from its own configuration (the default services of the
   * environment, at seeding or a later start), false when the admin API wrote it; absent for a
   * definition stored before the store recorded this.
   */
  seeded?: boolean
}

/** Every definition and the table version they make up, read together. */
export interface ServiceSnapshot {
  version: number
  services: StoredService[]
}

/**
 * Service definitions (docs/admin-api.md#managing-services). Every write bumps one table version; a write names the version
 * it was decided on and is refused (null) when another write came first, so two instances never
 * apply conflicting decisions. Changes reach every instance sharing the store (Redis: pub/sub).
 */
export interface ServiceStore {
  snapshot (): Promise<ServiceSnapshot>
  /** The table version alone (0: never written). */
  version (): Promise<number>
  /**
   * Creates or replaces `name`: the new table version, or null when the version was not `expected`.
   * `seeded` marks a write from the gateway's configuration rather than the admin API.
   */
  put (name: string, definition: Record<string, unknown>, at: string, expected: number, seeded?: boolean): Promise<number | null>
  /** Removes `name`: the new version; 0 when unknown; null when the version was not `expected`. */
  delete (name: string, expected: number): Promise<number | null>
  /** Writes these definitions (marked seeded) only when the table was never written; true when it did. */
  seed (services: Array<{ name: string, definition: Record<string, unknown> }>, at: string): Promise<boolean>
  /**
   * Called with the table version after a change by any instance; with -1 when changes may have
   * been missed (the subscriber reconnected), meaning "read the version again".
   */
  onChange (listener: (version: number) => void): void
}

export interface Store {
  readonly kind: 'embedded' | 'redis'
  readonly keys: KeyStore
  readonly services: ServiceStore
  readonly buckets: BucketStore
  readonly failures: FailureCounter
  readonly quotas: QuotaStore
  /** Operator warnings about the back end's configuration (shown in /ready), e.g. an evicting Redis. */
  readonly warnings: readonly string[]
  /** True when API key records can be read now (used by /ready). Never throws, bounded in time. */
  ping (): Promise<boolean>
  close (): Promise<void>
}
