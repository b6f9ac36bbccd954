// Leases on Redis buckets (docs/performance.md#the-redis-bucket-lease): a busy bucket's requests are
// decided in this process from tokens taken out of the shared bucket ahead of need, so they never
// wait on the network. The script (plugins/store/bucket-scripts.ts) moves n tokens into a
// reservation on the Redis clock; this side spends them, renews before they run out, and gives
// back what it did not use once the bucket goes idle (or at shutdown). Near empty — when the
// shared bucket has less than half its capacity spare — the script grants nothing and every
// request takes its token exactly, so a burst the size of the bucket is admitted exactly.
//
// What keeps this safe on the holder's side:
// - a lease is spent only until its local expiry, counted from before the call was sent, so it
//   ends here no later than the script reclaims it there;
// - one call per lease at a time, each with a higher seq; a call given up on (timeout, error) is
//   ignored if it answers later, and the script ignores it if it runs after a newer one;
// - renewals report the tokens still held, never more than the script has reserved.
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { UNITS_PER_TOKEN, type BucketResult } from '../../lib/token-bucket.js'

/** [granted, kept, units left in the shared bucket, stale (1) or not (0)] */
export type LeaseReply = [granted: number, kept: number, units: number, stale: number]
export type LeaseCommand = (key: string, burst: number, rpm: number, id: string, seq: number, keep: number, want: number, durationMs: number) => Promise<LeaseReply>

export interface LeaseOptions {
  /** How long the script keeps a lease (ms, default 2,000); renewals extend it. */
  durationMs?: number
  /** A lease unused this long gives its tokens back (ms, default 250). */
  idleMs?: number
  /** A lease is sized to this much of the bucket's local demand (ms, default 200). */
  leadMs?: number
  /** Most tokens one lease holds (default 1,000); also at most an eighth of the bucket. */
  maxTokens?: number
  /** A lease call not answered within this long is given up on (ms, default 1,000). */
  callTimeoutMs?: number
}

/** Smallest lease worth a call; a bucket under 8 × this (32 tokens) is never leased. */
export const MIN_LEASE = 4

interface Lease {
  /** The bucket id; one lease per bucket, for the limits it was taken with. */
  readonly name: string
  readonly key: string
  readonly burst: number
  readonly rpm: number
  /** The lease's field in the bucket's hash: this process's id and a counter. */
  readonly id: string
  tokens: number
  /** Monotonic ms after which the tokens are not spent any more. */
  expiresAt: number
  seq: number
  inFlight: boolean
  /** No call before this (monotonic ms): set after a failed call. */
  retryAt: number
  /** The script may hold a record of this lease (a reply said so, or a call went unanswered). */
  recorded: boolean
  lastUse: number
  /** Tokens spent since the last grant, and when that was: the demand estimate. */
  spent: number
  grantedAt: number
  want: number
  /** The last renewal asked for tokens and got none (the bucket is near empty): renew only once this lease is spent. */
  starved: boolean
  /** The shared bucket's units at the last reply, and when it arrived: for the headers. */
  sharedUnits: number
  sharedAt: number
}

export class BucketLeases {
  readonly #call: LeaseCommand
  readonly #leases = new Map<string, Lease>()
  readonly #owner = randomBytes(6).toString('hex')
  #counter = 0
  readonly #durationMs: number
  readonly #idleMs: number
  readonly #leadMs: number
  readonly #maxTokens: number
  readonly #callTimeoutMs: number
  #sweeper: NodeJS.Timeout | null = null
  #closed = false

  constructor (call: LeaseCommand, opts: LeaseOptions = {}) {
    this.#call = call
    this.#durationMs = opts.durationMs ?? 2000
    this.#idleMs = opts.idleMs ?? 250
    this.#leadMs = opts.leadMs ?? 200
    this.#maxTokens = opts.maxTokens ?? 1000
    this.#callTimeoutMs = opts.callTimeoutMs ?? 1000
  }

  /** Leases held (for tests and metrics). */
  get size (): number {
    return this.#leases.size
  }

  /** The most tokens one lease on a bucket of this capacity may hold; below MIN_LEASE, none. */
  maxFor (burst: number): number {
    return Math.min(this.#maxTokens, Math.floor(burst / 8))
  }

  /** Tokens this process holds unused for bucket `id` (for tests). */
  held (id: string): number {
    const lease = this.#leases.get(id)
    return lease === undefined || performance.now() >= lease.expiresAt ? 0 : lease.tokens
  }

  /**
   * Spends one leased token of bucket `id` and answers at once, or undefined when there is none
   * (no lease, one taken with other limits, empty, expired): then the caller takes it exactly.
   * A lease taken with other limits is not touched, so it goes idle and is given back.
   */
  take (id: string, burst: number, rpm: number): BucketResult | undefined {
    const lease = this.#leases.get(id)
    if (lease === undefined || lease.burst !== burst || lease.rpm !== rpm) return undefined
    const now = performance.now()
    lease.lastUse = now
    if (lease.tokens <= 0 || now >= lease.expiresAt) {
      lease.tokens = 0
      if (!lease.inFlight && now >= lease.retryAt) this.#renew(lease, now)
      return undefined
    }
    lease.tokens--
    lease.spent++
    if (lease.tokens <= lease.want >> 1 && !lease.starved && !lease.inFlight && now >= lease.retryAt) this.#renew(lease, now)
    return this.#result(lease, now)
  }

  /**
   * Spends a leased token for a take that the shared bucket refused or that has not gone out yet;
   * false when there is none. A process never refuses a request while it holds a token.
   */
  spend (id: string, burst: number, rpm: number): boolean {
    const lease = this.#leases.get(id)
    if (lease === undefined || lease.tokens <= 0 || lease.burst !== burst || lease.rpm !== rpm) return false
    const now = performance.now()
    if (now >= lease.expiresAt) return false
    lease.tokens--
    lease.spent++
    lease.lastUse = now
    return true
  }

  /** The headers' view of a take from bucket `id`'s lease, after `spend`. */
  result (id: string): BucketResult | undefined {
    const lease = this.#leases.get(id)
    return lease === undefined ? undefined : this.#result(lease, performance.now())
  }

  /**
   * An exact take on a busy bucket found `units` in it: start a lease if the bucket is large
   * enough to lease and has room to spare beyond the half that stays with exact takes.
   */
  consider (name: string, key: string, burst: number, rpm: number, units: number): void {
    if (this.#closed) return
    const old = this.#leases.get(name)
    if (old !== undefined) {
      if (old.burst === burst && old.rpm === rpm) return
      // The bucket's limits changed: what the old lease holds goes back first.
      this.#leases.delete(name)
      this.#end(old).catch(() => {})
    }
    const max = this.maxFor(burst)
    if (max < MIN_LEASE) return
    if (Math.floor(units / UNITS_PER_TOKEN) - Math.ceil(burst / 2) < MIN_LEASE) return
    const now = performance.now()
    const id = `${this.#owner}.${(this.#counter++).toString(36)}`
    const want = Math.min(max, 8 * MIN_LEASE)
    const lease: Lease = { name, key, burst, rpm, id, tokens: 0, expiresAt: 0, seq: 0, inFlight: false, retryAt: 0, recorded: false, lastUse: now, spent: 0, grantedAt: now, want, starved: false, sharedUnits: units, sharedAt: now }
    this.#leases.set(name, lease)
    this.#startSweeper()
    this.#renew(lease, now)
  }

  /** Gives every lease back; resolves when the calls answered or were given up on. */
  async close (): Promise<void> {
    this.#closed = true
    if (this.#sweeper !== null) clearInterval(this.#sweeper)
    this.#sweeper = null
    const ends: Array<Promise<void>> = []
    for (const lease of this.#leases.values()) ends.push(this.#end(lease))
    this.#leases.clear()
    await Promise.all(ends)
  }

  #result (lease: Lease, now: number): BucketResult {
    // The shared bucket as last seen, refilled since, plus what this process holds: an estimate,
    // exact when one process serves the bucket, since other processes' takes are not seen here.
    const cap = lease.burst * UNITS_PER_TOKEN
    const shared = lease.sharedUnits + Math.floor(now - lease.sharedAt) * lease.rpm
    const units = Math.min(cap, shared + lease.tokens * UNITS_PER_TOKEN)
    return { allowed: true, limit: lease.burst, remaining: Math.floor(units / UNITS_PER_TOKEN), resetMs: Math.ceil((cap - units) / lease.rpm), retryAfterMs: 0 }
  }

  /** Sizes the next grant from the demand since the last one. */
  #want (lease: Lease, now: number): number {
    const elapsed = now - lease.grantedAt
    if (elapsed > 0 && lease.spent > 0) {
      const wanted = Math.ceil(lease.spent / elapsed * this.#leadMs)
      lease.want = Math.max(MIN_LEASE, Math.min(this.maxFor(lease.burst), wanted))
    }
    return lease.want
  }

  #renew (lease: Lease, now: number): void {
    const keep = lease.tokens
    const want = this.#want(lease, now)
    const seq = ++lease.seq
    lease.inFlight = true
    lease.recorded = true
    this.#send(lease, seq, keep, want).then((reply) => {
      if (reply === undefined || seq !== lease.seq || this.#leases.get(lease.name) !== lease) return
      lease.inFlight = false
      const [granted, kept, units, stale] = reply
      if (stale === 1) return
      const at = performance.now()
      lease.tokens = Math.min(lease.tokens, kept) + granted
      // From before the call was sent, less a margin for the two clocks' rates: the script's
      // expiry is its own clock at the call plus the duration, which is no earlier.
      lease.expiresAt = now + this.#durationMs - this.#durationMs / 50
      lease.recorded = kept + granted > 0
      lease.sharedUnits = units
      lease.sharedAt = at
      lease.spent = 0
      lease.grantedAt = at
      lease.starved = granted === 0
      // Nothing held and nothing granted (the bucket is near empty): the lease ends, and the
      // bucket's takes are exact until one finds room to spare again.
      if (lease.tokens === 0 && granted === 0) {
        this.#leases.delete(lease.name)
        this.#end(lease).catch(() => {})
      }
    }, () => {})
  }

  /** One lease call; undefined when it failed or was given up on (then retried no sooner than a timeout later). */
  async #send (lease: Lease, seq: number, keep: number, want: number): Promise<LeaseReply | undefined> {
    let timer: NodeJS.Timeout | undefined
    const gaveUp = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, this.#callTimeoutMs, undefined)
      timer.unref() // a give-back at shutdown must not hold the process
    })
    const reply = await Promise.race([
      this.#call(lease.key, lease.burst, lease.rpm, lease.id, seq, keep, want, this.#durationMs).catch(() => undefined),
      gaveUp
    ])
    clearTimeout(timer)
    if (reply === undefined && seq === lease.seq) {
      lease.inFlight = false
      lease.retryAt = performance.now() + this.#callTimeoutMs
    }
    return reply
  }

  /** Gives the tokens back (and ends the reservation of spent ones); the lease is gone here at once. */
  async #end (lease: Lease): Promise<void> {
    const keep = performance.now() < lease.expiresAt ? lease.tokens : 0
    lease.tokens = 0
    lease.seq++
    if (!lease.recorded) return
    await this.#send(lease, lease.seq, keep, -1)
  }

  #startSweeper (): void {
    if (this.#sweeper !== null) return
    this.#sweeper = setInterval(() => { this.#sweep() }, Math.max(10, this.#idleMs >> 1))
    this.#sweeper.unref()
  }

  /** Idle leases give their tokens back; busy ones near expiry renew. */
  #sweep (): void {
    const now = performance.now()
    for (const lease of this.#leases.values()) {
      if (lease.inFlight) continue
      if (now - lease.lastUse >= this.#idleMs) {
        this.#leases.delete(lease.name)
        this.#end(lease).catch(() => {})
      } else if (lease.tokens > 0 && lease.expiresAt - now < this.#durationMs / 2 && now >= lease.retryAt) {
        this.#renew(lease, now)
      }
    }
    if (this.#leases.size === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper)
      this.#sweeper = null
    }
  }
}
