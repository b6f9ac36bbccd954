// Rate-limit buckets in process memory: the embedded store's buckets, and the per-instance fallback
// the rate limiter uses while Redis is unreachable (SPEC §6, §7).
//
// Bounded: a bucket that has refilled completely is the same as no bucket, so it can be dropped.
// Each new bucket first looks at the two least recently used ones, drops them if they are full and
// moves them to the back otherwise; above `maxBuckets` the least recently used bucket is evicted
// (its client then starts from a full bucket, the same as after a restart). A flood of distinct
// client addresses therefore costs O(1) per request and at most `maxBuckets` entries.
import { performance } from 'node:perf_hooks'
import { take } from '../../src/token-bucket.js'
import type { BucketResult, BucketStore } from './types.js'

export interface MemoryBucketsOptions {
  /** Hard cap on buckets kept (default 100,000, roughly 15 MB). */
  maxBuckets?: number
  /** Integer milliseconds; any monotonic origin. Defaults to the monotonic clock. */
  now?: () => number
}

interface Entry {
  id: string
  units: number
  at: number
  /** When the bucket is full again, on the same clock. */
  fullAt: number
  prev: Entry | null
  next: Entry | null
}

const SWEEP_PER_INSERT = 2
const monotonicMs = () => Math.floor(performance.now())

export class MemoryBuckets implements BucketStore {
  readonly #buckets = new Map<string, Entry>()
  // Least recently used first. A list of our own rather than the Map's order: V8 leaves deleted
  // Map entries as holes that iteration from the head must skip, which made a sweep O(n).
  #head: Entry | null = null
  #tail: Entry | null = null
  readonly #max: number
  readonly #now: () => number
  #evicted = 0

  constructor (opts: MemoryBucketsOptions = {}) {
    this.#max = Math.max(1, opts.maxBuckets ?? 100_000)
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
    let entry = this.#buckets.get(id)
    if (entry === undefined) this.#makeRoom(now)
    const { state, result } = take(entry, now, burst, rpm)
    if (entry === undefined) {
      entry = { id, units: state.units, at: state.at, fullAt: 0, prev: null, next: null }
      this.#buckets.set(id, entry)
    } else {
      this.#unlink(entry)
      entry.units = state.units
      entry.at = state.at
    }
    entry.fullAt = now + result.resetMs
    this.#append(entry)
    return result
  }

  async close (): Promise<void> {
    this.#buckets.clear()
    this.#head = null
    this.#tail = null
  }

  #makeRoom (now: number): void {
    for (let i = 0; i < SWEEP_PER_INSERT && this.#head !== null; i++) {
      const entry = this.#head
      this.#unlink(entry)
      // Still refilling: a second chance at the back, so one slow bucket never blocks the sweep.
      if (entry.fullAt > now) this.#append(entry)
      else this.#buckets.delete(entry.id)
    }
    while (this.#buckets.size >= this.#max && this.#head !== null) {
      const oldest = this.#head
      this.#unlink(oldest)
      this.#buckets.delete(oldest.id)
      this.#evicted++
    }
  }

  #unlink (entry: Entry): void {
    if (entry.prev === null) this.#head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === null) this.#tail = entry.prev
    else entry.next.prev = entry.prev
    entry.prev = null
    entry.next = null
  }

  #append (entry: Entry): void {
    entry.prev = this.#tail
    if (this.#tail === null) this.#head = entry
    else this.#tail.next = entry
    this.#tail = entry
  }
}
