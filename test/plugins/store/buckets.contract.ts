// The BucketStore contract (plugins/store/types.ts) every back end passes: called by the shared
// store contract suite and by the bucket tests. Real clocks only, so every timing assertion is
// either a lower bound on a wait or uses refill rates slow enough that scheduling noise cannot
// matter (1 token per minute).
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { BucketStore } from '../../../plugins/store/types.js'

export interface BucketsUnderTest {
  buckets: BucketStore
  cleanup (): Promise<void>
}

export function bucketContract (t: Test, makeBuckets: () => Promise<BucketsUnderTest>): void {
  const id = () => `contract-${randomUUID()}`

  async function withBuckets (t: Test, fn: (buckets: BucketStore) => Promise<void>): Promise<void> {
    const { buckets, cleanup } = await makeBuckets()
    t.teardown(cleanup)
    await fn(buckets)
  }

  t.test('a new bucket admits exactly burst requests, counting remaining down to 0', (t) => withBuckets(t, async (b) => {
    const bucket = id()
    for (let i = 4; i >= 0; i--) {
      const r = await b.take(bucket, 5, 1)
      t.match(r, { allowed: true, limit: 5, remaining: i, retryAfterMs: 0 })
    }
    const denied = await b.take(bucket, 5, 1)
    t.match(denied, { allowed: false, limit: 5, remaining: 0 })
  }))

  t.test('a denied take reports when a token and a full bucket exist again', (t) => withBuckets(t, async (b) => {
    const bucket = id()
    await b.take(bucket, 2, 1)
    await b.take(bucket, 2, 1)
    const denied = await b.take(bucket, 2, 1)
    // 1 token per minute: the next in at most 60 s, full in at most 120 s; a few ms have passed.
    t.ok(denied.retryAfterMs > 55_000 && denied.retryAfterMs <= 60_000, `retryAfterMs ${denied.retryAfterMs}`)
    t.ok(denied.resetMs > 115_000 && denied.resetMs <= 120_000, `resetMs ${denied.resetMs}`)
  }))

  t.test('resetMs after one take is the time one token takes to refill', (t) => withBuckets(t, async (b) => {
    const r = await b.take(id(), 10, 1)
    t.equal(r.resetMs, 60_000)
  }))

  t.test('tokens come back at rpm per minute', (t) => withBuckets(t, async (b) => {
    const bucket = id()
    // 600 rpm = one token per 100 ms.
    t.equal((await b.take(bucket, 1, 600)).allowed, true)
    await sleep(250)
    const r = await b.take(bucket, 1, 600)
    t.equal(r.allowed, true, 'a token refilled')
  }))

  t.test('a bucket never holds more than burst tokens, however long it was idle', (t) => withBuckets(t, async (b) => {
    const bucket = id()
    await b.take(bucket, 3, 60_000) // one token per ms
    await sleep(50)
    const r = await b.take(bucket, 3, 60_000)
    t.equal(r.remaining, 2)
  }))

  t.test('buckets with different ids are independent', (t) => withBuckets(t, async (b) => {
    const a = id()
    const c = id()
    await b.take(a, 1, 1)
    t.equal((await b.take(a, 1, 1)).allowed, false)
    t.equal((await b.take(c, 1, 1)).allowed, true)
  }))

  t.test('concurrent takes on one bucket admit exactly burst', (t) => withBuckets(t, async (b) => {
    const bucket = id()
    const results = await Promise.all(Array.from({ length: 60 }, () => b.take(bucket, 20, 1)))
    t.equal(results.filter((r) => r.allowed).length, 20)
    const remaining = results.filter((r) => r.allowed).map((r) => r.remaining).sort((x, y) => x - y)
    t.same(remaining, Array.from({ length: 20 }, (_, i) => i), 'each admitted take saw a distinct remaining')
  }))

  t.test('a lowered burst clamps the tokens already in the bucket', (t) => withBuckets(t, async (b) => {
    const bucket = id()
    await b.take(bucket, 10, 1)
    const r = await b.take(bucket, 2, 1)
    t.match(r, { allowed: true, limit: 2, remaining: 1 })
  }))
}
