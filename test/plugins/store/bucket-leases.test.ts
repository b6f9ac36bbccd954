// Leases on Redis buckets (docs/performance.md#the-redis-bucket-lease) against the real Redis at
// REDIS_URL, each test under its own key prefix. Refill is 1 token per minute, so over a test of
// a few seconds no whole token comes back and every count is exact.
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { RedisBuckets } from '../../../plugins/store/buckets-redis.js'
import type { BucketResult } from '../../../plugins/store/types.js'
import { until } from '../../support/basics.js'
import { startRedis } from '../../support/redis-server.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const clientOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false }
const UNIT = 60_000
const RPM = 1

const admin = new Redis(REDIS_URL, { lazyConnect: true })
t.before(() => admin.connect())
t.teardown(() => admin.quit())

interface Instance { buckets: RedisBuckets, client: Redis }

/** A gateway instance's buckets on a connection of its own; closed (leases given back) at teardown. */
async function instance (t: Test, prefix: string, url = REDIS_URL, leases = { idleMs: 100 }): Promise<Instance> {
  const client = new Redis(url, { ...clientOptions, lazyConnect: true })
  client.on('error', () => {})
  await client.connect()
  const buckets = new RedisBuckets(client, { keyPrefix: prefix, leases })
  t.teardown(async () => { await buckets.close(); client.disconnect() })
  return { buckets, client }
}

function newPrefix (t: Test): string {
  const prefix = `gwtest:${randomBytes(6).toString('hex')}:`
  t.teardown(async () => {
    const keys = await admin.keys(`${prefix}*`)
    if (keys.length > 0) await admin.del(...keys)
  })
  return prefix
}

/** n takes that arrive together (a busy bucket). */
async function wave (i: Instance, id: string, burst: number, n: number): Promise<BucketResult[]> {
  return await Promise.all(Array.from({ length: n }, async () => await i.buckets.take(id, burst, RPM)))
}

const admitted = (results: BucketResult[]): number => results.filter((r) => r.allowed).length

/** Whole tokens in the shared bucket as stored (no lease may be outstanding). */
async function storedTokens (key: string, burst: number): Promise<number> {
  const [u] = await admin.hmget(key, 'u')
  return u === null ? burst : Math.floor(Number(u) / UNIT)
}

/** Counts the lease and take script calls `c` sends from now on. */
function countCalls (c: Redis): { calls: number, stop (): void } {
  const counter = { calls: 0, stop () { c.sendCommand = send } }
  const send = c.sendCommand.bind(c)
  c.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
    if (command.name === 'evalsha' || command.name === 'eval') counter.calls++
    return (send as (...args: unknown[]) => unknown)(command, ...rest)
  }) as typeof c.sendCommand
  return counter
}

t.test('a busy bucket is served from a lease: few script calls, and every token accounted for once it is given back', async (t) => {
  const prefix = newPrefix(t)
  const a = await instance(t, prefix)
  const burst = 1000
  const counter = countCalls(a.client)
  let allowed = admitted(await wave(a, 'hot', burst, 50)) // exact; finds room, starts a lease
  t.ok(await until(() => (a.buckets.leases?.held('hot') ?? 0) > 0, 2000), 'the busy bucket got a lease')
  const hkeys = await admin.hkeys(a.buckets.key('hot'))
  t.ok(hkeys.includes('l') && hkeys.some((k) => k.startsWith('L:')), `the reservation is in the bucket's hash (${hkeys.join(', ')})`)
  const callsBefore = counter.calls
  for (let i = 0; i < 10; i++) allowed += admitted(await wave(a, 'hot', burst, 30))
  const calls = counter.calls - callsBefore
  counter.stop()
  t.equal(allowed, 350, 'every take admitted')
  t.ok(calls <= 30, `${calls} script calls for 300 takes served from leases`)

  // Idle: the unused tokens go back, the reservation ends, nothing is lost.
  t.ok(await until(() => a.buckets.leases?.size === 0, 2000), 'the idle lease was given back')
  t.ok(await until(async () => !(await admin.hkeys(a.buckets.key('hot'))).includes('l'), 2000), 'no reservation left in Redis')
  t.equal(await storedTokens(a.buckets.key('hot'), burst), burst - allowed, 'the shared bucket holds exactly what was not admitted')
})

t.test('three instances hammering one bucket with leases never admit more than it holds, and lose nothing', async (t) => {
  const prefix = newPrefix(t)
  const instances = [await instance(t, prefix), await instance(t, prefix), await instance(t, prefix)]
  const burst = 400
  let total = 0
  let rounds = 0
  let leased = 0
  // Waves on all three at once until a whole round admits nothing.
  for (;;) {
    rounds++
    const results = await Promise.all(instances.map(async (i) => await wave(i, 'shared', burst, 25)))
    leased += instances.filter((i) => (i.buckets.leases?.size ?? 0) > 0).length
    const got = results.reduce((sum, r) => sum + admitted(r), 0)
    total += got
    t.ok(total <= burst, `round ${rounds}: ${total} admitted in all, never more than ${burst}`)
    if (got === 0 || rounds > 60) break
  }
  t.ok(leased > 0, `leases served part of it (${leased} instance-rounds with a lease)`)
  // Near empty the takes were exact; what leases still held comes back once they are idle.
  t.ok(await until(() => instances.every((i) => i.buckets.leases?.size === 0), 3000), 'every lease given back')
  for (;;) {
    const got = admitted(await wave(instances[rounds % 3], 'shared', burst, 10))
    rounds++
    total += got
    if (got === 0) break
  }
  t.equal(total, burst, 'in the end exactly the bucket was admitted: no token created, none lost')
})

t.test('under-admission: tokens another instance holds are bounded by its lease and come back when it goes idle', async (t) => {
  const prefix = newPrefix(t)
  const a = await instance(t, prefix, REDIS_URL, { idleMs: 1000 })
  const b = await instance(t, prefix)
  const burst = 800
  const name = 'ua'
  const maxLease = a.buckets.leases?.maxFor(burst) ?? 0
  let byA = admitted(await wave(a, 'ua', burst, 40))
  t.ok(await until(() => (a.buckets.leases?.held(name) ?? 0) > 0, 2000), 'A holds a lease')
  byA += admitted(await wave(a, 'ua', burst, 5))
  const heldByA = a.buckets.leases?.held(name) ?? 0

  // The traffic moves to B, which drains the shared bucket while A's lease sits unused.
  let byB = 0
  for (;;) {
    const got = admitted(await wave(b, 'ua', burst, 50))
    byB += got
    if (got === 0) break
  }
  const under = burst - byA - byB
  t.comment(`A admitted ${byA} and holds ${heldByA}; B admitted ${byB} before its first refusal: under-admission ${under} tokens (bound: one lease, ${maxLease}; all leases: ${burst / 2})`)
  t.ok(under >= 0, 'never over')
  t.ok(under <= maxLease, `under-admission ${under} ≤ one lease's ${maxLease} tokens`)
  t.ok(under <= heldByA + 5, 'and it is what A held when the traffic moved')

  // A goes idle and gives its tokens back: B gets exactly those.
  t.ok(await until(() => a.buckets.leases?.size === 0, 4000), 'A gave its lease back')
  let more = 0
  for (;;) {
    const got = admitted(await wave(b, 'ua', burst, 50))
    more += got
    if (got === 0) break
  }
  t.equal(more, under, 'the tokens A held came back to the shared bucket')
  t.equal(byA + byB + more, burst)
})

t.test('a lowered limit applies at once: never more than the new burst, exactly it once the old lease is back', async (t) => {
  const prefix = newPrefix(t)
  const a = await instance(t, prefix)
  const b = await instance(t, prefix)
  admitted(await wave(a, 'change', 400, 40))
  t.ok(await until(() => (a.buckets.leases?.size ?? 0) > 0, 2000), 'a lease on the old limit')
  // The burst drops to 20 (a service's rateLimit changed): both instances take with the new one.
  let admittedNew = 0
  const changedAt = performance.now()
  let back = -1
  let most = 0
  const limits = new Set<number>()
  for (let round = 0; round < 200; round++) {
    for (const i of [a, b]) {
      const results = await wave(i, 'change', 20, 5)
      for (const r of results) limits.add(r.limit)
      admittedNew += admitted(results)
      most = Math.max(most, admittedNew)
    }
    if (back < 0 && a.buckets.leases?.size === 0) back = performance.now() - changedAt
    if (back >= 0 && admittedNew === 20) break
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.same([...limits], [20], 'the new limit is reported at once')
  t.ok(most <= 20, `${most} admitted under the new limit, never more than 20`)
  // The new limit holds from the first request (above); the old lease only narrows the bucket
  // until it is given back, which the first busy take on the new limit does at once.
  t.ok(back >= 0, 'the old lease was given back')
  t.comment(`old lease given back ${back.toFixed(0)} ms after the change`)
  t.equal(admittedNew, 20, 'and then exactly the new burst was admitted')
})

t.test('an instance that dies holding a lease: the script reclaims it at its expiry, counting it as used', async (t) => {
  const prefix = newPrefix(t)
  const client = new Redis(REDIS_URL, { ...clientOptions, lazyConnect: true })
  client.on('error', () => {})
  await client.connect()
  const dead = new RedisBuckets(client, { keyPrefix: prefix, leases: { durationMs: 300, idleMs: 60_000 } })
  const burst = 400
  let byDead = admitted(await wave({ buckets: dead, client }, 'crash', burst, 40))
  t.ok(await until(() => (dead.leases?.held('crash') ?? 0) > 0, 2000), 'it holds a lease')
  byDead += admitted(await wave({ buckets: dead, client }, 'crash', burst, 3))
  const held = dead.leases?.held('crash') ?? 0
  client.disconnect() // "kill -9": nothing is given back
  t.teardown(async () => { await dead.close() })

  const other = await instance(t, prefix)
  let rest = 0
  t.ok(await until(async () => {
    if ((await other.buckets.take('crash', burst, RPM)).allowed) rest++ // any call reclaims expired leases
    return !(await admin.hkeys(other.buckets.key('crash'))).includes('l')
  }, 3000), 'the reservation is gone after the lease expired')
  for (;;) {
    const got = admitted(await wave(other, 'crash', burst, 50))
    rest += got
    if (got === 0) break
  }
  t.ok(rest > 0, `the other instance admitted ${rest} more`)
  t.equal(byDead + rest, burst - held, `exactly the bucket less the dead instance's ${held} unused tokens, which count as used`)
})

t.test('a burst-sized bucket is never leased: 40 takes on two instances, burst 10, admit exactly 10', async (t) => {
  const prefix = newPrefix(t)
  const a = await instance(t, prefix)
  const b = await instance(t, prefix)
  const results = await Promise.all([wave(a, 'small', 10, 20), wave(b, 'small', 10, 20)])
  t.equal(admitted(results.flat()), 10)
  t.equal(a.buckets.leases?.size, 0)
  t.equal(b.buckets.leases?.size, 0)
})

t.test('takes waiting on a paused Redis share one timer per script call, and all answer by the deadline', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = newPrefix(t)
  const a = await instance(t, prefix, redis.url)
  await a.buckets.take('warm', 5, 1) // loads the script on this connection
  redis.pause()
  t.teardown(() => redis.resume())
  const realSetTimeout = globalThis.setTimeout
  let timers = 0
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => { timers++; return realSetTimeout(...args) }) as typeof setTimeout
  const answers: Array<Promise<BucketResult | undefined>> = []
  try {
    for (let i = 0; i < 50; i++) {
      answers.push(new Promise((resolve) => { a.buckets.takeWithin('slow', 5, 1, 100, (result) => { resolve(result) }) }))
    }
    await new Promise((resolve) => setImmediate(resolve)) // the call goes out on the next tick
  } finally {
    globalThis.setTimeout = realSetTimeout
  }
  t.ok(timers <= 1, `${timers} timers for 50 takes`)
  const results = await Promise.all(answers)
  t.same(results, Array(50).fill(undefined), 'every take timed out, none left waiting')
})

t.test('in one script call, only the takes whose own deadline passed give up; the others get its answer', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = newPrefix(t)
  const a = await instance(t, prefix, redis.url)
  await a.buckets.take('warm', 5, 1)
  redis.pause()
  const take = async (timeoutMs: number): Promise<BucketResult | undefined> =>
    await new Promise((resolve) => { a.buckets.takeWithin('mixed', 5, 1, timeoutMs, (result) => { resolve(result) }) })
  const short = take(50)
  const long = take(5000)
  t.equal(await short, undefined, 'the 50 ms take timed out')
  redis.resume()
  const result = await long
  t.match(result, { allowed: true, limit: 5 }, 'the 5 s take, sent in the same call, got its answer')
  t.equal(result?.remaining, 3, 'replayed as the second take of the call')
})
