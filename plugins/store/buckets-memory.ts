// Rate-limit buckets in process memory: the embedded store's buckets, and the per-instance fallback
// the rate limiter uses while Redis is unreachable (docs/architecture.md#the-store, docs/proxying.md#rate-limits).
//
// Bounded: a bucket that has refilled completely is the same as no bucket, so it can be dropped.
// Each new bucket first looks at the two least recently used ones, drops them if they are full and
// moves them to the back otherwise; above `maxBuckets` the least recently used bucket is evicted
// (its client then starts from a full bucket, the same as after a restart). A flood of distinct
// client addresses therefore costs O(1) per request and at most `maxBuckets` entries.
import { performance } from 'node:perf_hooks'
import { LruMap, type CacheEntry } from 'toad-cache'
import { takeFrom, UNITS_PER_TOKEN } from '../../lib/token-bucket.js'
import type { BucketResult, BucketStore } from './types.js'

export interface MemoryBucketsOptions {
  /** Hard cap on buckets kept (default 100,000, roughly 15 MB). */
  maxBuckets?: number
  /** Integer milliseconds; any monotonic origin. Defaults to the monotonic clock. */
  now?: () => number
}

interface Bucket {
  units: number
  at: number
  /** When the bucket is full again, on the same clock. */
  fullAt: number
}

const SWEEP_PER_INSERT = 2
const monotonicMs = () => Math.floor(performance.now())

export class MemoryBuckets implements BucketStore {
  // toad-cache's LRU (a Map plus a linked list, least recently used first): a bucket that is
  // taken from moves to the back, and at `maxBuckets` a new one evicts the front.
  readonly #buckets: LruMap<Bucket>
  readonly #max: number
  readonly #now: () => number
  #evicted = 0

  constructor (opts: MemoryBucketsOptions = {}) {
    this.#max = Math.max(1, opts.maxBuckets ?? 100_000)
    this.#buckets = new LruMap<Bucket>(this.#max)
    this.#now = opts.now ?? monotonicMs
  }

  /** Buckets currently held. */
  get size (): number {
    return this.#buckets.size
  }

  /** Buckets dropped before they were full because of the hard cap. */
  get evicted (): number {
    return this.#evicted
  }

  async take (id: string, burst: number, rpm: number): Promise<BucketResult> {
    return this.takeSync(id, burst, rpm)
  }

  /** The same as `take`, without a promise: the fallback path of the rate limiter uses it. */
  takeSync (id: string, burst: number, rpm: number): BucketResult {
    const now = this.#now()
    let bucket = this.#buckets.get(id)
    if (bucket === undefined) {
      this.#makeRoom(now)
      bucket = { units: burst * UNITS_PER_TOKEN, at: now, fullAt: 0 } // a new bucket is full
      this.#buckets.set(id, bucket)
    }
    const result = takeFrom(bucket, now, burst, rpm)
    bucket.fullAt = now + result.resetMs
    return result
  }

  async close (): Promise<void> {
    this.#buckets.clear()
  }

  #makeRoom (now: number): void {
    for (let i = 0; i < SWEEP_PER_INSERT; i++) {
      const oldest = this.#buckets.first as CacheEntry<Bucket> | null
      if (oldest === null) break
      // Still refilling: a second chance at the back (get() moves it), so one slow bucket never
      // blocks the sweep; full again: the same as no bucket, dropped.
      if (oldest.value.fullAt > now) this.#buckets.get(oldest.key)
      else this.#buckets.delete(oldest.key)
    }
    // The set() that follows evicts the least recently used bucket.
    if (this.#buckets.size >= this.#max) this.#evicted++
  }
}
