import t from 'tap'
import { MemoryBuckets } from '../../../plugins/store/buckets-memory.js'
import { bucketContract } from './buckets.contract.js'

t.test('MemoryBuckets passes the bucket contract', async (t) => {
  bucketContract(t, async () => {
    const buckets = new MemoryBuckets()
    return { buckets, cleanup: () => buckets.close() }
  })
})

t.test('200,000 distinct clients at one instant never hold more than maxBuckets', async (t) => {
  const buckets = new MemoryBuckets({ maxBuckets: 10_000, now: () => 0 })
  for (let i = 0; i < 200_000; i++) buckets.takeSync(`ip:${i}`, 10, 60)
  t.equal(buckets.size, 10_000)
  t.equal(buckets.evicted, 190_000)
})

t.test('a flood of distinct clients over time is swept as buckets refill, without evictions', async (t) => {
  let now = 0
  const buckets = new MemoryBuckets({ maxBuckets: 100_000, now: () => now })
  let peak = 0
  // 200,000 clients, one request each, 5 per millisecond; a bucket is full again 1 s later.
  for (let i = 0; i < 200_000; i++) {
    if (i % 5 === 0) now++
    buckets.takeSync(`ip:${i}`, 10, 60)
    peak = Math.max(peak, buckets.size)
  }
  // 5,000 buckets are refilling at any moment; second chances given during the first second
  // leave the list slightly out of order, so the sweep trails the live set a little.
  t.ok(peak < 10_000, `peak ${peak} buckets for 5,000 live ones`)
  t.ok(buckets.size < 10_000, `${buckets.size} buckets at the end`)
  t.equal(buckets.evicted, 0)
})

t.test('a drained bucket survives a flood of other clients while it refills', async (t) => {
  let now = 0
  const buckets = new MemoryBuckets({ maxBuckets: 50_000, now: () => now })
  for (let i = 0; i < 3; i++) buckets.takeSync('k:victim', 3, 1) // 1 rpm: a minute per token
  for (let i = 0; i < 200_000; i++) {
    if (i % 5 === 0) now++
    buckets.takeSync(`ip:${i}`, 10, 60)
  }
  // 40 s later the victim's bucket is still empty: it was not dropped and recreated full.
  t.equal(buckets.takeSync('k:victim', 3, 1).allowed, false)
})

t.test('a bucket that refilled completely is dropped and behaves as new', async (t) => {
  let now = 0
  const buckets = new MemoryBuckets({ now: () => now })
  buckets.takeSync('a', 2, 60)
  now = 5000
  buckets.takeSync('b', 2, 60)
  buckets.takeSync('c', 2, 60)
  t.equal(buckets.size, 2, '"a" was full again and swept')
  t.same(buckets.takeSync('a', 2, 60), { allowed: true, limit: 2, remaining: 1, resetMs: 1000, retryAfterMs: 0 })
})

t.test('close empties the store', async (t) => {
  const buckets = new MemoryBuckets()
  await buckets.take('x', 1, 1)
  await buckets.close()
  t.equal(buckets.size, 0)
})
