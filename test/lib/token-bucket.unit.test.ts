import t from 'tap'
import { fillMs, fullBucket, refill, remaining, resetMs, retryAfterMs, take, takeFrom, UNITS_PER_TOKEN, type BucketState } from '../../lib/token-bucket.js'

/** Takes `n` times at `now`, threading the state. */
function takeN (state: BucketState | undefined, n: number, now: number, burst: number, rpm: number) {
  const results = []
  for (let i = 0; i < n; i++) {
    const step = take(state, now, burst, rpm)
    state = step.state
    results.push(step.result)
  }
  return { state: state as BucketState, results }
}

t.test('a new bucket admits burst requests at once, then denies', async (t) => {
  const { state, results } = takeN(undefined, 10, 1000, 10, 60)
  t.same(results.map((r) => r.allowed), Array(10).fill(true))
  t.same(results.map((r) => r.remaining), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
  const denied = take(state, 1000, 10, 60).result
  t.same(denied, { allowed: false, limit: 10, remaining: 0, resetMs: 10_000, retryAfterMs: 1000 })
})

t.test('an empty bucket at 60 rpm gets one token back each second, exactly', async (t) => {
  let { state } = takeN(undefined, 10, 0, 10, 60)
  const at999 = take(state, 999, 10, 60)
  t.same(at999.result, { allowed: false, limit: 10, remaining: 0, resetMs: 9001, retryAfterMs: 1 })
  const at1000 = take(at999.state, 1000, 10, 60)
  t.same(at1000.result, { allowed: true, limit: 10, remaining: 0, resetMs: 10_000, retryAfterMs: 0 })
  state = at1000.state
  const at2500 = take(state, 2500, 10, 60)
  t.same(at2500.result, { allowed: true, limit: 10, remaining: 0, resetMs: 9500, retryAfterMs: 0 })
  const at2600 = take(at2500.state, 2600, 10, 60)
  t.same(at2600.result, { allowed: false, limit: 10, remaining: 0, resetMs: 9400, retryAfterMs: 400 })
})

t.test('retry-after and reset round up to the next whole millisecond', async (t) => {
  // 7 rpm: one token per 8571.43 ms.
  const { state } = takeN(undefined, 1, 0, 1, 7)
  const r = take(state, 0, 1, 7).result
  t.equal(r.retryAfterMs, 8572)
  t.equal(r.resetMs, 8572)
  t.equal(take(state, 8571, 1, 7).result.allowed, false)
  t.equal(take(state, 8572, 1, 7).result.allowed, true)
})

t.test('an idle bucket refills only up to burst', async (t) => {
  const { state } = takeN(undefined, 3, 0, 3, 60)
  const later = refill(state, 3_600_000, 3, 60)
  t.equal(later.units, 3 * UNITS_PER_TOKEN)
  t.equal(remaining(later), 3)
  t.equal(resetMs(later, 3, 60), 0)
})

t.test('a clock that runs backwards refills nothing and never throws', async (t) => {
  const { state } = takeN(undefined, 2, 10_000, 2, 60)
  const back = take(state, 5_000, 2, 60)
  t.equal(back.result.allowed, false)
  t.equal(back.state.at, 5_000)
})

t.test('a lowered burst clamps the stored tokens', async (t) => {
  const { state } = takeN(undefined, 1, 0, 100, 60)
  const r = take(state, 0, 5, 60).result
  t.same(r, { allowed: true, limit: 5, remaining: 4, resetMs: 1000, retryAfterMs: 0 })
})

t.test('remaining counts whole tokens only', async (t) => {
  t.equal(remaining({ units: UNITS_PER_TOKEN * 2 - 1, at: 0 }), 1)
  t.equal(retryAfterMs({ units: UNITS_PER_TOKEN - 60, at: 0 }, 60), 1)
  t.equal(retryAfterMs({ units: UNITS_PER_TOKEN, at: 0 }, 60), 0)
})

t.test('a full bucket is what an unknown bucket is', async (t) => {
  t.same(take(fullBucket(4, 7), 7, 4, 60), take(undefined, 7, 4, 60))
})

t.test('the admitted count over T seconds is burst + rate·T at most', async (t) => {
  // One request every 10 ms for 10 s against burst 20, 600 rpm (10/s): the LD-01 bound
  // (docs/reliability.md).
  let state: BucketState | undefined
  let admitted = 0
  for (let now = 0; now <= 10_000; now += 10) {
    const step = take(state, now, 20, 600)
    state = step.state
    if (step.result.allowed) admitted++
  }
  t.equal(admitted, 20 + 100)
})

t.test('fillMs is the time an empty bucket takes to fill', async (t) => {
  t.equal(fillMs(20, 600), 2000)
  t.equal(fillMs(10, 60), 10_000)
  t.equal(fillMs(1, 7), 8572)
})

t.test('takeFrom takes in place exactly what take returns', async (t) => {
  let pure: BucketState | undefined
  const kept: BucketState = fullBucket(5, 1000)
  const mismatches: string[] = []
  // Takes at uneven times, a burst, a pause, a lowered capacity, a clock step back.
  const steps: Array<[now: number, burst: number]> = [[1000, 5], [1000, 5], [1001, 5], [1001, 5], [1001, 5], [1002, 5], [1002, 5], [1500, 5], [61_000, 5], [61_000, 3], [60_000, 3], [60_500, 3]]
  for (const [now, burst] of steps) {
    const a = take(pure, now, burst, 60)
    pure = a.state
    const b = takeFrom(kept, now, burst, 60)
    if (JSON.stringify(a.result) !== JSON.stringify(b) || a.state.units !== kept.units || a.state.at !== kept.at) mismatches.push(`at ${now}: ${JSON.stringify(a)} vs ${JSON.stringify({ result: b, state: kept })}`)
  }
  t.same(mismatches, [])
})
