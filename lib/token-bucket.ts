// Token-bucket arithmetic (docs/proxying.md#rate-limits), shared by the in-memory store and mirrored line for line by the
// Redis Lua script in plugins/store/buckets-redis.ts.
//
// Tokens are kept in integer "units": one token is 60,000 units, so a refill of `rpm` tokens per
// minute is exactly `rpm` units per millisecond. With integer millisecond clocks every value below
// is an integer: no floating-point drift, and both back ends compute identical answers.

export const UNITS_PER_TOKEN = 60_000

/** The answer to one take: what the rate limiter needs for its decision and headers. */
export interface BucketResult {
  allowed: boolean
  /** Capacity (burst). */
  limit: number
  /** Whole tokens left after this take. */
  remaining: number
  /** Milliseconds until the bucket is full again. */
  resetMs: number
  /** Milliseconds until one token exists (0 when allowed). */
  retryAfterMs: number
}

export interface BucketState {
  /** Units in the bucket at `at` (0 ≤ units ≤ burst · UNITS_PER_TOKEN). */
  units: number
  /** Milliseconds (the clock of whoever keeps the bucket) of the last update. */
  at: number
}

/** A bucket seen for the first time is full. */
export function fullBucket (burst: number, now: number): BucketState {
  return { units: burst * UNITS_PER_TOKEN, at: now }
}

/**
 * The bucket at `now`. A lowered capacity clamps. A clock that went backwards refills nothing and
 * the state takes the earlier time: at worst the step is refilled twice (capped at one bucketful),
 * never a bucket that stays stalled until the clock catches up.
 */
export function refill (state: BucketState, now: number, burst: number, rpm: number): BucketState {
  const cap = burst * UNITS_PER_TOKEN
  const elapsed = now > state.at ? now - state.at : 0
  return { units: Math.min(cap, state.units + elapsed * rpm), at: now }
}

/** Whole tokens available. */
export function remaining (state: BucketState): number {
  return Math.floor(state.units / UNITS_PER_TOKEN)
}

/** Milliseconds until the bucket is full again. */
export function resetMs (state: BucketState, burst: number, rpm: number): number {
  return Math.ceil((burst * UNITS_PER_TOKEN - state.units) / rpm)
}

/** Milliseconds until one whole token exists (0 when one exists now). */
export function retryAfterMs (state: BucketState, rpm: number): number {
  return state.units >= UNITS_PER_TOKEN ? 0 : Math.ceil((UNITS_PER_TOKEN - state.units) / rpm)
}

/** Refills, then takes one token if there is one. Returns the new state and the result. */
export function take (state: BucketState | undefined, now: number, burst: number, rpm: number): { state: BucketState, result: BucketResult } {
  const current = state === undefined ? fullBucket(burst, now) : refill(state, now, burst, rpm)
  const allowed = current.units >= UNITS_PER_TOKEN
  const next = allowed ? { units: current.units - UNITS_PER_TOKEN, at: now } : current
  return {
    state: next,
    result: {
      allowed,
      limit: burst,
      remaining: remaining(next),
      resetMs: resetMs(next, burst, rpm),
      retryAfterMs: allowed ? 0 : retryAfterMs(next, rpm)
    }
  }
}

/**
 * The same take as `take`, on a state the caller keeps: refills and takes in place, so a hot
 * path allocates only the result.
 */
export function takeFrom (state: BucketState, now: number, burst: number, rpm: number): BucketResult {
  const cap = burst * UNITS_PER_TOKEN
  const elapsed = now > state.at ? now - state.at : 0
  state.units = Math.min(cap, state.units + elapsed * rpm)
  state.at = now
  const allowed = state.units >= UNITS_PER_TOKEN
  if (allowed) state.units -= UNITS_PER_TOKEN
  return {
    allowed,
    limit: burst,
    remaining: remaining(state),
    resetMs: resetMs(state, burst, rpm),
    retryAfterMs: allowed ? 0 : retryAfterMs(state, rpm)
  }
}

/** Milliseconds for an empty bucket to fill: the `w` of RateLimit-Policy, the longest idle life. */
export function fillMs (burst: number, rpm: number): number {
  return Math.ceil(burst * UNITS_PER_TOKEN / rpm)
}
