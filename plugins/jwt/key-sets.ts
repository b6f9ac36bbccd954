// One issuer's signing keys (docs/jwt.md#keys-and-rotation). The gateway fetches the JWKS itself,
// so it owns the policy, and hands jose a local key set (createLocalJWKSet) built once per change:
//   - the first fetch starts with the gateway and never delays it; until one succeeds, fetches are
//     retried with a backoff capped at 5 s and requests for this issuer get 503 + Retry-After;
//   - a fetched set is refreshed in the background when its answer goes stale (Cache-Control
//     max-age, else 300 s);
//   - a token whose `kid` is unknown refetches at once, at most once per 30 s, so a flood of random
//     `kid`s costs one fetch and a rotated key is accepted on its first request;
//   - a failed refresh keeps the keys in use (logged, counted) and is tried again later.
import type { FastifyBaseLogger } from 'fastify'
import { createLocalJWKSet, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose'
import type { Dispatcher } from 'undici'
import { refreshDelayMs } from '../../lib/jwt.js'
import { FetchFailed, getJson, type FetchOutcome } from './fetch.js'

export { FETCH_OUTCOMES, jwksDispatcher, type FetchOutcome } from './fetch.js'

export interface KeySetPolicy {
  fetchTimeoutMs: number
  defaultRefreshMs: number
  minRefreshMs: number
  maxRefreshMs: number
  /** At most one unknown-kid refetch per this many ms. */
  kidRefetchMs: number
  /** Backoff while no key set was ever fetched: first delay and cap. */
  firstRetryMs: number
  maxRetryMs: number
  /** Retry delay of a failed refresh while cached keys are in use. */
  staleRetryMs: number
  /** Largest JWKS or discovery document read. */
  maxBytes: number
}

export const DEFAULT_POLICY: KeySetPolicy = {
  fetchTimeoutMs: 3000,
  defaultRefreshMs: 300_000,
  minRefreshMs: 10_000,
  maxRefreshMs: 86_400_000,
  kidRefetchMs: 30_000,
  firstRetryMs: 100,
  maxRetryMs: 5000,
  staleRetryMs: 30_000,
  maxBytes: 1024 * 1024
}

export interface KeySetStatus {
  issuer: string
  keys: 'loaded' | 'never_fetched'
  key_count: number
  /** When a fetch last succeeded (ISO-8601), or null. */
  last_fetch: string | null
  /** The outcome of the failing fetches since the last success, or null when the last one worked. */
  failing: FetchOutcome | null
}

export interface KeySetOptions {
  issuer: string
  /** null: OpenID Connect discovery (`<issuer>/.well-known/openid-configuration` → jwks_uri). */
  jwksUrl: string | null
  dispatcher: Dispatcher
  log: FastifyBaseLogger
  onFetch: (issuer: string, outcome: FetchOutcome) => void
  policy?: Partial<KeySetPolicy>
}

/** Keys the gateway will ever verify with: public, asymmetric, for signatures. */
function usable (jwk: JWK): boolean {
  return typeof jwk === 'object' && jwk !== null && jwk.kty !== 'oct' && jwk.d === undefined && (jwk.use === undefined || jwk.use === 'sig')
}

export class KeySet {
  readonly issuer: string
  /** Bumped whenever the keys in use change: cached verifications made with older keys are redone. */
  version = 0
  /** jose's view of the current keys; null until the first fetch succeeded. */
  keys: JWTVerifyGetKey | null = null
  readonly #opts: KeySetOptions
  readonly #policy: KeySetPolicy
  #jwksUrl: string | null
  #fingerprint = ''
  #fetching: Promise<boolean> | null = null
  #timer: NodeJS.Timeout | null = null
  #failures = 0
  #keyCount = 0
  #lastSuccess: number | null = null
  #lastFailure: FetchOutcome | null = null
  #nextAttemptAt = 0
  #lastKidRefetch = -Infinity
  #lastWarn = -Infinity
  #closed = false

  constructor (opts: KeySetOptions) {
    this.issuer = opts.issuer
    this.#opts = opts
    this.#policy = { ...DEFAULT_POLICY, ...opts.policy }
    this.#jwksUrl = opts.jwksUrl
  }

  /** Starts the first fetch; never awaited by start-up. */
  start (): void {
    this.refresh().catch(() => {})
  }

  /** The fetch in flight, if any (a request for a never-fetched issuer may wait for it). */
  get pending (): Promise<boolean> | null {
    return this.#fetching
  }

  /** Whole seconds until the next fetch attempt, at least 1: the Retry-After of a 503. */
  retryAfterSeconds (now = Date.now()): number {
    if (this.#fetching !== null) return 1
    return Math.max(1, Math.ceil((this.#nextAttemptAt - now) / 1000))
  }

  /**
   * An unknown `kid`: refetch now unless an unknown-kid refetch ran within the last 30 s (then
   * null, and the token is refused). A fetch already in flight is shared, whatever started it.
   */
  refetchForKid (now = Date.now()): Promise<boolean> | null {
    if (this.#fetching !== null) return this.#fetching
    if (now - this.#lastKidRefetch < this.#policy.kidRefetchMs) return null
    this.#lastKidRefetch = now
    return this.refresh()
  }

  /** Fetches now (one fetch at a time); true when it succeeded. */
  refresh (): Promise<boolean> {
    if (this.#fetching !== null) return this.#fetching
    if (this.#closed) return Promise.resolve(false)
    const run = this.#load().then((ttl) => {
      this.#succeeded(ttl)
      return true
    }, (err: unknown) => {
      this.#failed(err)
      return false
    }).finally(() => { this.#fetching = null })
    this.#fetching = run
    return run
  }

  close (): void {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #schedule (ms: number): void {
    if (this.#closed) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#nextAttemptAt = Date.now() + ms
    this.#timer = setTimeout(() => { this.#timer = null; this.start() }, ms)
    this.#timer.unref()
  }

  /** What /ready shows of this issuer (it never changes readiness: an IdP outage is not the gateway's). */
  status (): KeySetStatus {
    return {
      issuer: this.issuer,
      keys: this.keys === null ? 'never_fetched' : 'loaded',
      key_count: this.#keyCount,
      last_fetch: this.#lastSuccess === null ? null : new Date(this.#lastSuccess).toISOString(),
      failing: this.#failures > 0 ? this.#lastFailure : null
    }
  }

  #succeeded (ttl: number): void {
    this.#lastSuccess = Date.now()
    if (this.#failures > 0) this.#opts.log.info({ event: 'jwks_fetched', issuer: this.issuer }, `token keys of ${this.issuer} fetched again`)
    this.#failures = 0
    this.#schedule(ttl)
  }

  #failed (err: unknown): void {
    if (this.#closed) return
    const outcome = err instanceof FetchFailed ? err.outcome : 'unreachable'
    this.#lastFailure = outcome
    this.#opts.onFetch(this.issuer, outcome)
    this.#failures++
    const never = this.keys === null
    const delay = never
      ? Math.min(this.#policy.maxRetryMs, this.#policy.firstRetryMs * 2 ** (this.#failures - 1))
      : this.#policy.staleRetryMs
    this.#schedule(delay)
    const now = Date.now()
    // One warning per 30 s per issuer: an IdP outage must not flood the log.
    if (now - this.#lastWarn >= 30_000) {
      this.#lastWarn = now
      this.#opts.log.warn({ event: 'jwks_fetch_failed', issuer: this.issuer, outcome, reason: (err as Error).message, failures: this.#failures },
        never
          ? `cannot fetch the token keys of ${this.issuer}: its tokens get 503 until a fetch succeeds (next try in ${delay} ms)`
          : `cannot refresh the token keys of ${this.issuer}: the cached keys stay in use`)
    }
  }

  /** One fetch (discovery first when needed); resolves with the ms until the next refresh. */
  async #load (): Promise<number> {
    if (this.#jwksUrl === null) this.#jwksUrl = await this.#discover()
    const url = this.#jwksUrl
    const { status, headers, body } = await getJson(this.#opts.dispatcher, url, this.#policy).catch((err: unknown) => {
      // A discovered jwks_uri that went away is looked up again next time.
      if (this.#opts.jwksUrl === null && err instanceof FetchFailed && err.outcome === 'bad_status') this.#jwksUrl = null
      throw err
    })
    const doc = body as { keys?: unknown }
    if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.keys)) throw new FetchFailed('invalid', 'the JWKS has no "keys" array')
    const keys = (doc.keys as JWK[]).filter(usable)
    const fingerprint = JSON.stringify(keys)
    let outcome: FetchOutcome = 'unchanged'
    if (fingerprint !== this.#fingerprint) {
      const set: JSONWebKeySet = { keys }
      let local: JWTVerifyGetKey
      try {
        local = createLocalJWKSet(set)
      } catch (err) {
        throw new FetchFailed('invalid', `the JWKS is malformed: ${(err as Error).message}`)
      }
      this.keys = local
      this.#fingerprint = fingerprint
      this.version++
      this.#keyCount = keys.length
      outcome = 'ok'
      this.#opts.log.info({ event: 'jwks_loaded', issuer: this.issuer, keys: keys.length, kids: keys.map((k) => k.kid ?? null) },
        `token keys of ${this.issuer} loaded (${keys.length})`)
    }
    this.#opts.onFetch(this.issuer, outcome)
    return refreshDelayMs(url, status, headers, { defaultMs: this.#policy.defaultRefreshMs, minMs: this.#policy.minRefreshMs, maxMs: this.#policy.maxRefreshMs })
  }

  /** OpenID Connect Discovery 1.0 section 4: the document's `issuer` must be exactly ours. */
  async #discover (): Promise<string> {
    const base = this.issuer.replace(/\/+$/, '')
    const { body } = await getJson(this.#opts.dispatcher, `${base}/.well-known/openid-configuration`, this.#policy)
    const doc = body as { issuer?: unknown, jwks_uri?: unknown }
    if (doc === null || typeof doc !== 'object') throw new FetchFailed('invalid', 'the discovery document is not a JSON object')
    if (doc.issuer !== this.issuer) throw new FetchFailed('invalid', 'the discovery document names another issuer')
    if (typeof doc.jwks_uri !== 'string' || !/^https?:\/\//i.test(doc.jwks_uri)) throw new FetchFailed('invalid', 'the discovery document has no http(s) jwks_uri')
    return doc.jwks_uri
  }
}
