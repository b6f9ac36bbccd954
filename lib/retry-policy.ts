// When and how long to wait before retrying an upstream attempt (docs/proxying.md#retries-and-circuit-breakers). Pure functions and one
// small class; the proxy decides what an attempt's outcome was and calls these.
import type { RetryConfig } from './config.js'

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/** RFC 9110 §9.2.2 idempotent methods, as docs/proxying.md#retries-and-circuit-breakers lists them (TRACE is never proxied). */
export function isIdempotent (method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase())
}

/** The statuses the seed retries: a backend (or a proxy in front of it) that could not answer. */
export function isRetryableStatus (status: number): boolean {
  return status === 502 || status === 503 || status === 504
}

/**
 * Delay before retry n (n = 0 for the first retry): `min(initial * multiplier^n, max)`, spread
 * uniformly by ±jitterFactor so clients that failed together do not come back together, and
 * clamped to [0, maxDelayMs] (the jitter never pushes past the operator's cap).
 */
export function backoffDelay (retryIndex: number, cfg: RetryConfig, random: () => number = Math.random): number {
  const n = Math.max(0, Math.floor(retryIndex))
  const base = Math.min(cfg.initialDelayMs * cfg.multiplier ** n, cfg.maxDelayMs)
  const spread = base * cfg.jitterFactor * (2 * random() - 1)
  return Math.round(Math.min(Math.max(base + spread, 0), cfg.maxDelayMs))
}

const DELTA_SECONDS = /^\d+$/
// RFC 9110 §5.6.7: IMF-fixdate, plus the obsolete RFC 850 and asctime forms recipients must accept.
const HTTP_DATE = [
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT$/,
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/
]

/**
 * `Retry-After` (RFC 9110 §10.2.3) in milliseconds from `now`: delta-seconds or an HTTP-date (a
 * date in the past means 0). Digits are always seconds, never milliseconds (@fastify/reply-from
 * reads them as milliseconds). Anything else is null. Only the first of repeated headers counts.
 */
export function parseRetryAfter (value: string | string[] | undefined, now: number = Date.now()): number | null {
  const raw = Array.isArray(value) ? value[0] : value
  if (raw === undefined) return null
  const v = raw.trim()
  if (DELTA_SECONDS.test(v)) {
    const ms = Number(v) * 1000
    return Number.isFinite(ms) ? Math.min(ms, Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER
  }
  if (!HTTP_DATE.some((re) => re.test(v))) return null
  // asctime has no zone: it is GMT by definition, which Date.parse would read as local time.
  const at = Date.parse(/GMT$/.test(v) ? v : `${v} GMT`)
  if (Number.isNaN(at)) return null
  return Math.max(0, at - now)
}

/** The wait before retry n: the backoff, or longer if the upstream asked, never above the cap. */
export function retryDelay (retryIndex: number, cfg: RetryConfig, retryAfterHeader?: string | string[], random?: () => number): number {
  const backoff = backoffDelay(retryIndex, cfg, random)
  const asked = parseRetryAfter(retryAfterHeader) ?? 0
  return Math.min(Math.max(backoff, asked), cfg.maxDelayMs)
}

export interface RetryBudgetOptions {
  /** Retries allowed as a fraction of the requests in the window (docs/proxying.md#retries-and-circuit-breakers: 0.2). */
  ratio?: number
  /** The window (docs/proxying.md#retries-and-circuit-breakers: 10 s), kept as one bucket per second. */
  windowMs?: number
  /** Retries always allowed per second, so a quiet service can still retry (docs/proxying.md#retries-and-circuit-breakers: 10). */
  minPerSecond?: number
  /** Milliseconds from any fixed origin; monotonic by default so wall-clock jumps do not matter. */
  now?: () => number
}

/**
 * A per-service retry budget (docs/proxying.md#retries-and-circuit-breakers; Envoy's retry budget, gRPC's retry throttling): a retry is
 * allowed while fewer than `minPerSecond` retries were made in the current second, or while the
 * retries of the window stay within `ratio` × the requests of the window. So a failing backend gets
 * at most ~20% extra load from retries instead of (1 + maxRetries)×.
 *
 * The proxy calls `recordRequest()` once per client request it forwards (not per attempt) and
 * `tryAcquire()` before each retry; a refused retry means "answer with what we have".
 * Memory is one pair of counters per second of the window; each call is O(1) amortised.
 */
export class RetryBudget {
  readonly #ratio: number
  readonly #minPerSecond: number
  readonly #now: () => number
  readonly #requests: number[]
  readonly #retries: number[]
  #requestSum = 0
  #retrySum = 0
  #second = -Infinity

  constructor (opts: RetryBudgetOptions = {}) {
    this.#ratio = opts.ratio ?? 0.2
    this.#minPerSecond = opts.minPerSecond ?? 10
    this.#now = opts.now ?? (() => performance.now())
    const slots = Math.max(1, Math.ceil((opts.windowMs ?? 10_000) / 1000))
    this.#requests = new Array<number>(slots).fill(0)
    this.#retries = new Array<number>(slots).fill(0)
  }

  recordRequest (): void {
    const i = this.#advance()
    this.#requests[i]++
    this.#requestSum++
  }

  tryAcquire (): boolean {
    const i = this.#advance()
    if (this.#retries[i] < this.#minPerSecond || this.#retrySum + 1 <= this.#ratio * this.#requestSum) {
      this.#retries[i]++
      this.#retrySum++
      return true
    }
    return false
  }

  /** Moves the window to the current second, emptying the buckets that fell out; returns its slot. */
  #advance (): number {
    const slots = this.#requests.length
    const second = Math.floor(this.#now() / 1000)
    if (second > this.#second) {
      if (second - this.#second >= slots) {
        this.#requests.fill(0)
        this.#retries.fill(0)
        this.#requestSum = 0
        this.#retrySum = 0
      } else {
        for (let s = this.#second + 1; s <= second; s++) {
          const j = ((s % slots) + slots) % slots
          this.#requestSum -= this.#requests[j]
          this.#retrySum -= this.#retries[j]
          this.#requests[j] = 0
          this.#retries[j] = 0
        }
      }
      this.#second = second
    }
    // A clock that steps back (only an injected one can) keeps counting in the newest bucket.
    return ((this.#second % slots) + slots) % slots
  }
}
