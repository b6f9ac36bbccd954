// RedisBuckets against real Redis: the shared one at REDIS_URL (own key prefix, own keys deleted)
// and, where commands are counted or scripts flushed, a private redis-server started by PID.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { MAX_BATCH, RedisBuckets } from '../../../plugins/store/buckets-redis.js'
import type { BucketResult } from '../../../plugins/store/types.js'
import { startRedis } from '../../support/redis-server.js'
import { bucketContract } from './buckets.contract.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const newPrefix = () => `gwtest:${randomBytes(6).toString('hex')}:`
// The store plugin's options that matter here: fail fast, never replay.
const clientOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false }

const admin = new Redis(REDIS_URL, { lazyConnect: true })
t.before(() => admin.connect())
t.teardown(() => admin.quit())

async function deleteKeysUnder (prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, batch] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (batch.length > 0) await admin.del(...batch)
  } while (cursor !== '0')
}

async function client (url = REDIS_URL): Promise<Redis> {
  const c = new Redis(url, { ...clientOptions, lazyConnect: true })
  await c.connect()
  return c
}

/** Milliseconds on the Redis server's clock. */
async function serverMs (c: Redis): Promise<number> {
  const [s, us] = await c.time()
  return Number(s) * 1000 + Number(us) / 1000
}

/** Counts the script calls `c` sends from now on, and how many takes (n) each one carries. */
function countScriptCalls (c: Redis): { batches: number[], stop (): void } {
  const batches: number[] = []
  const send = c.sendCommand.bind(c)
  c.sendCommand = ((command: { name: string, args: unknown[] }, ...rest: unknown[]) => {
    // ioredis names a defined command `evalsha` here and turns it into EVAL on the wire when the
    // connection has not loaded the script yet: both are one call. Args: sha, 1, key, burst, rpm, n.
    if (command.name === 'evalsha' || command.name === 'eval') batches.push(Number(command.args[5]))
    return (send as (...args: unknown[]) => unknown)(command, ...rest)
  }) as typeof c.sendCommand
  return { batches, stop () { c.sendCommand = send } }
}

t.test('RedisBuckets passes the bucket contract', async (t) => {
  bucketContract(t, async () => {
    const prefix = newPrefix()
    const c = await client()
    return {
      buckets: new RedisBuckets(c, { keyPrefix: prefix }),
      async cleanup () { await c.quit(); await deleteKeysUnder(prefix) }
    }
  })
})

t.test('a bucket is one hash-tagged key that expires when the bucket would be full', async (t) => {
  const prefix = newPrefix()
  const c = await client()
  t.teardown(async () => { await c.quit(); await deleteKeysUnder(prefix) })
  const buckets = new RedisBuckets(c, { keyPrefix: prefix })
  const r = await buckets.take('k:abc', 10, 60)
  const key = `${prefix}{rl:k:abc}`
  t.equal(buckets.key('k:abc'), key)
  t.same(await admin.hkeys(key), ['u', 't'])
  const ttl = await admin.pttl(key)
  t.ok(ttl > 0 && ttl <= r.resetMs, `PTTL ${ttl} <= resetMs ${r.resetMs}`)

  // 1 token per ms: full again (and gone) within a millisecond or two.
  await buckets.take('ip:10.0.0.1', 5, 60_000)
  await sleep(50)
  t.equal(await admin.exists(`${prefix}{rl:ip:10.0.0.1}`), 0, 'a full bucket costs no memory')
})

t.test('buckets keep time on the Redis server, so gateway clock skew changes nothing', async (t) => {
  const prefix = newPrefix()
  const a = await client()
  const b = await client()
  t.teardown(async () => { await a.quit(); await b.quit(); await deleteKeysUnder(prefix) })
  const ahead = new RedisBuckets(a, { keyPrefix: prefix })
  const behind = new RedisBuckets(b, { keyPrefix: prefix })
  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })

  Date.now = () => realNow() + 3_600_000 // this "gateway" runs an hour fast
  const first = [await ahead.take('shared', 5, 1), await ahead.take('shared', 5, 1), await ahead.take('shared', 5, 1)]
  Date.now = () => realNow() - 3_600_000 // and this one an hour slow
  const second = [await behind.take('shared', 5, 1), await behind.take('shared', 5, 1), await behind.take('shared', 5, 1)]
  Date.now = realNow

  t.same([...first, ...second].map((r) => r.allowed), [true, true, true, true, true, false])
  t.same([...first, ...second].map((r) => r.remaining), [4, 3, 2, 1, 0, 0])
  const stored = Number(await admin.hget(`${prefix}{rl:shared}`, 't'))
  t.ok(Math.abs(stored - await serverMs(admin)) < 5000, 'the bucket is stamped with the server TIME')
})

t.test('three gateways hammering one bucket admit what one bucket allows', async (t) => {
  const prefix = newPrefix()
  const clients = [await client(), await client(), await client()]
  t.teardown(async () => { await Promise.all(clients.map((c) => c.quit())); await deleteKeysUnder(prefix) })
  const gateways = clients.map((c) => new RedisBuckets(c, { keyPrefix: prefix }))
  const burst = 20
  const rpm = 600 // 10 tokens per second
  const runMs = 3000

  let admitted = 0
  let denied = 0
  const start = await serverMs(admin)
  const until = Date.now() + runMs
  const loops = gateways.flatMap((g) => Array.from({ length: 6 }, async () => {
    while (Date.now() < until) {
      if ((await g.take('hot', burst, rpm)).allowed) admitted++
      else denied++
    }
  }))
  await Promise.all(loops)
  const seconds = (await serverMs(admin) - start) / 1000

  const ideal = burst + (rpm / 60) * seconds
  t.comment(`admitted ${admitted} of ${admitted + denied} over ${seconds.toFixed(3)} s (server clock); ideal ${ideal.toFixed(1)}`)
  t.ok(admitted <= burst + (rpm / 60) * seconds + 1, `admitted ${admitted} <= ${(ideal + 1).toFixed(1)}`)
  // The window is read before the first take and after the last one answered: on a loaded machine
  // up to half a second of it can pass with no take in flight, so the floor allows 5 tokens of that.
  const floor = burst + (rpm / 60) * Math.max(0, seconds - 0.5)
  t.ok(admitted >= floor, `admitted ${admitted} >= ${floor.toFixed(1)} (ideal less 0.5 s of refill)`)
  t.ok(denied > admitted, 'the bucket was actually contended')
})

t.test('one Redis command per take in the steady state, and nothing taken twice after SCRIPT FLUSH', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const c = await client(redis.url)
  t.teardown(() => c.quit())
  const buckets = new RedisBuckets(c, { keyPrefix: 'gw:' })

  await buckets.take('warm', 100, 60) // the first take on a connection sends the script body
  await c.config('RESETSTAT')
  const sent: string[] = []
  const send = c.sendCommand.bind(c)
  c.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
    sent.push(command.name)
    return (send as (...args: unknown[]) => unknown)(command, ...rest)
  }) as typeof c.sendCommand

  for (let i = 0; i < 50; i++) await buckets.take(`id-${i % 5}`, 100, 60)
  t.same(sent, Array(50).fill('evalsha'), 'the client sent 50 EVALSHA and nothing else')
  c.sendCommand = send
  const stats = await c.info('commandstats')
  const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
  t.equal(calls('evalsha'), 50, 'the server ran 50 EVALSHA')
  t.equal(calls('eval'), 0)
  t.equal(calls('hmget'), 50, 'each ran the script once')

  // NOSCRIPT (a restarted or flushed Redis): ioredis re-sends the body; the take happens once.
  const before = await buckets.take('flush', 3, 1)
  await c.script('FLUSH')
  const after = await buckets.take('flush', 3, 1)
  t.equal(before.remaining, 2)
  t.equal(after.remaining, 1)
})

t.test('50 takes that arrive together share one script call and get what 50 single takes would', async (t) => {
  const prefix = newPrefix()
  const c = await client()
  t.teardown(async () => { await c.quit(); await deleteKeysUnder(prefix) })
  const buckets = new RedisBuckets(c, { keyPrefix: prefix })
  const calls = countScriptCalls(c)
  const results = await Promise.all(Array.from({ length: 50 }, () => buckets.take('hot', 10, 1)))
  calls.stop()

  t.ok(calls.batches.length <= 5, `${calls.batches.length} script calls for 50 takes`)
  t.equal(calls.batches.reduce((a, b) => a + b, 0), 50, 'every take was sent once')
  // One instant on the server: a fresh bucket of 10 at 1 token per minute, no refill between takes.
  const granted = results.slice(0, 10)
  t.same(granted.map((r) => r.allowed), Array(10).fill(true), 'the first 10 waiters, in order of arrival, are admitted')
  t.same(granted.map((r) => r.remaining), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
  t.same(granted.map((r) => r.resetMs), Array.from({ length: 10 }, (_, i) => (i + 1) * 60_000))
  t.same(granted.map((r) => r.retryAfterMs), Array(10).fill(0))
  for (const r of results.slice(10)) {
    t.same(r, { allowed: false, limit: 10, remaining: 0, resetMs: 600_000, retryAfterMs: 60_000 })
  }
})

t.test('three instances on three connections taking together admit exactly the bucket', async (t) => {
  const prefix = newPrefix()
  const clients = [await client(), await client(), await client()]
  t.teardown(async () => { await Promise.all(clients.map((c) => c.quit())); await deleteKeysUnder(prefix) })
  const gateways = clients.map((c) => new RedisBuckets(c, { keyPrefix: prefix }))
  const calls = clients.map(countScriptCalls)
  const results = (await Promise.all(gateways.map((g) => Promise.all(Array.from({ length: 40 }, () => g.take('shared', 25, 1)))))).flat()
  for (const c of calls) c.stop()

  const admitted = results.filter((r) => r.allowed)
  t.equal(admitted.length, 25, 'exactly burst of 120 takes admitted')
  t.same(admitted.map((r) => r.remaining).sort((a, b) => a - b), Array.from({ length: 25 }, (_, i) => i), 'each remaining value seen once')
  const denied = results.filter((r) => !r.allowed)
  t.ok(denied.every((r) => r.retryAfterMs > 0 && r.remaining === 0), 'every denied take says when a token exists')
  t.ok(calls.every((c) => c.batches.length <= 3), `script calls per instance: ${calls.map((c) => c.batches.length).join(', ')}`)
})

t.test('a batch never carries more than MAX_BATCH takes', async (t) => {
  const prefix = newPrefix()
  const c = await client()
  t.teardown(async () => { await c.quit(); await deleteKeysUnder(prefix) })
  const buckets = new RedisBuckets(c, { keyPrefix: prefix })
  const calls = countScriptCalls(c)
  const n = 3 * MAX_BATCH + 10
  const results = await Promise.all(Array.from({ length: n }, () => buckets.take('big', 2 * MAX_BATCH, 1)))
  calls.stop()
  t.ok(calls.batches.every((size) => size <= MAX_BATCH), `batch sizes ${calls.batches.join(', ')}`)
  t.equal(calls.batches.reduce((a, b) => a + b, 0), n)
  t.equal(results.filter((r) => r.allowed).length, 2 * MAX_BATCH)
  t.same(results.slice(0, 2 * MAX_BATCH).map((r) => r.remaining), Array.from({ length: 2 * MAX_BATCH }, (_, i) => 2 * MAX_BATCH - 1 - i),
    'batches run in the order they were filled')
})

t.test('takes that arrive while a call is in flight go out together as the next call', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const c = await client(redis.url)
  t.teardown(() => c.quit())
  const buckets = new RedisBuckets(c, { keyPrefix: 'gw:', maxWaitMs: 60_000 })
  await buckets.take('other', 5, 1) // loads the script on this connection
  const calls = countScriptCalls(c)

  redis.pause() // the first call stays in flight while three more takes arrive, each in its own tick
  const pending: Array<Promise<BucketResult>> = [buckets.take('hot', 5, 1)]
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    pending.push(buckets.take('hot', 5, 1))
  }
  await sleep(20)
  t.same(calls.batches, [1], 'only the first take was sent')
  redis.resume()
  const results = await Promise.all(pending)
  calls.stop()
  t.same(calls.batches, [1, 3])
  t.same(results.map((r) => r.remaining), [4, 3, 2, 1])
})

t.test('takes do not wait longer than maxWaitMs for a call that does not answer', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const c = await client(redis.url)
  t.teardown(() => c.quit())
  const buckets = new RedisBuckets(c, { keyPrefix: 'gw:', maxWaitMs: 10 })
  await buckets.take('other', 5, 1)
  const calls = countScriptCalls(c)

  redis.pause()
  const pending: Array<Promise<BucketResult>> = [buckets.take('hot', 5, 1)]
  await new Promise((resolve) => setImmediate(resolve))
  pending.push(buckets.take('hot', 5, 1), buckets.take('hot', 5, 1))
  await sleep(50)
  t.same(calls.batches, [1, 2], 'the two later takes went out behind the first call, still unanswered')
  pending.push(buckets.take('hot', 5, 1))
  await sleep(50)
  t.same(calls.batches, [1, 2, 1], 'and so does a take after them')
  redis.resume()
  const results = await Promise.all(pending)
  calls.stop()
  t.same(results.map((r) => r.remaining), [4, 3, 2, 1], 'pipelined calls run in the order they were sent')
})

t.test('a script call that fails or times out rejects every waiter of its batch', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const c = new Redis(redis.url, { ...clientOptions, commandTimeout: 200, lazyConnect: true })
  c.on('error', () => {})
  await c.connect()
  t.teardown(() => c.disconnect())
  const buckets = new RedisBuckets(c, { keyPrefix: 'gw:' })

  // A key of the wrong type makes the script itself fail inside Redis.
  await c.set(buckets.key('broken'), 'not a hash')
  const failed = await Promise.allSettled(Array.from({ length: 5 }, () => buckets.take('broken', 5, 1)))
  t.same(failed.map((r) => r.status), Array(5).fill('rejected'))
  t.match((failed[0] as PromiseRejectedResult).reason, { message: /WRONGTYPE/ })
  await c.del(buckets.key('broken'))
  t.equal((await buckets.take('broken', 5, 1)).remaining, 4, 'the bucket works again')

  redis.pause()
  const timedOut = await Promise.allSettled(Array.from({ length: 5 }, () => buckets.take('slow', 5, 1)))
  redis.resume()
  t.same(timedOut.map((r) => r.status), Array(5).fill('rejected'))
  t.match((timedOut[0] as PromiseRejectedResult).reason, { message: /timed out/ })
})
