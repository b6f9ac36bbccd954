// The Redis response cache store against the real Redis at REDIS_URL: the contract suite, with a
// second store on the same prefix as a second instance would open it.
import t from 'tap'
import { loadConfig } from '../../../lib/config.js'
import { encodeEntry, RedisCacheStore } from '../../../plugins/cache/store-redis.js'
import { openStore, type RedisStore } from '../../../plugins/store/index.js'
import { cleanRedis, REDIS_URL, uniquePrefix } from '../../support/app.js'
import { until } from '../../support/basics.js'
import { cacheStoreContract, entry, sharedPair } from './store.contract.js'

async function openShared (prefix: string, nearMaxBytes = 0): Promise<{ store: RedisStore, cache: RedisCacheStore }> {
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: prefix }, { dotenv: false })
  const store = await openStore(config) as RedisStore
  return { store, cache: new RedisCacheStore({ ...store.connections, nearMaxBytes }) }
}

cacheStoreContract(t, async () => {
  const prefix = uniquePrefix()
  return sharedPair(await openShared(prefix), await openShared(prefix), async () => { await cleanRedis(prefix) })
})

t.test('entries live under the configured key prefix, with a TTL', async (t) => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix)
  t.teardown(async () => { await a.cache.close(); await a.store.close(); await cleanRedis(prefix) })
  await a.cache.put('svc:/ttl', entry('x', { expiresAt: Date.now() + 30_000 }))
  const client = a.store.connections.client
  const ttl = await client.pttl(`${prefix}cache:svc:/ttl`)
  t.ok(ttl > 0 && ttl <= 30_000, `ttl ${ttl}`)
})

t.test('one instance holds the fetch lock of a URL; another learns when it is given back', async (t) => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix)
  const b = await openShared(prefix)
  t.teardown(async () => {
    await Promise.all([a.cache.close(), b.cache.close()])
    await Promise.all([a.store.close(), b.store.close()])
    await cleanRedis(prefix)
  })
  const token = await a.cache.lock('svc:/l', 10_000)
  t.type(token, 'string')
  t.equal(await b.cache.lock('svc:/l', 10_000), null)
  t.equal(await b.cache.locked('svc:/l'), true)
  await a.cache.unlock('svc:/l', token as string)
  t.equal(await b.cache.locked('svc:/l'), false)
  t.type(await b.cache.lock('svc:/l', 10_000), 'string')
})

// With near copies (what the gateway runs: CACHE_MAX_BYTES bounds them), one instance's own
// operations are exact at once; other instances' reach it through the channel, within 1 s.
cacheStoreContract(t, async () => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix, 1024 * 1024)
  return {
    store: a.cache,
    async cleanup () {
      await a.cache.close()
      await a.store.close()
      await cleanRedis(prefix)
    }
  }
})

t.test('a hit answered from the near copy costs no round trip; another instance\'s change drops it', async (t) => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix, 1024 * 1024)
  const b = await openShared(prefix, 1024 * 1024)
  t.teardown(async () => {
    await Promise.all([a.cache.close(), b.cache.close()])
    await Promise.all([a.store.close(), b.store.close()])
    await cleanRedis(prefix)
  })
  const raw = a.store.connections.client
  await a.cache.put('svc:/n', entry('one', { expiresAt: Date.now() + 60_000 }))
  t.equal((await a.cache.get('svc:/n'))[0]?.body.toString(), 'one', 'read from Redis once')
  // Removed behind the store's back (no message): a still answers from its copy, without Redis.
  await raw.del(`${prefix}cache:svc:/n`)
  t.equal((await a.cache.get('svc:/n'))[0]?.body.toString(), 'one', 'the near copy answered')
  t.ok(await until(async () => (await a.cache.get('svc:/n')).length === 0, 3000, 50), 'a copy never outlives its bound')

  // "Nothing there" is kept too: this instance's own fill replaces it at once, another's within 1 s.
  t.same(await a.cache.get('svc:/none'), [])
  await a.cache.put('svc:/none', entry('mine', { expiresAt: Date.now() + 60_000 }))
  t.equal((await a.cache.get('svc:/none')).length, 1, 'its own fill is seen at once')
  t.same(await a.cache.get('svc:/empty'), [])
  await b.cache.put('svc:/empty', entry('theirs', { expiresAt: Date.now() + 60_000 }))
  t.ok(await until(async () => (await a.cache.get('svc:/empty')).length === 1, 1000, 10), 'another instance\'s fill within 1 s')

  // Stored, invalidated and purged through b: a's copy goes as soon as the message arrives.
  await b.cache.put('svc:/n', entry('two', { expiresAt: Date.now() + 60_000 }))
  t.ok(await until(async () => (await a.cache.get('svc:/n'))[0]?.body.toString() === 'two', 1000, 10), 'a new fill reaches a within 1 s')
  await b.cache.delete('svc:/n')
  t.ok(await until(async () => (await a.cache.get('svc:/n')).length === 0, 1000, 10), 'an invalidation reaches a within 1 s')
  await b.cache.put('svc:/n', entry('three', { expiresAt: Date.now() + 60_000 }))
  t.ok(await until(async () => (await a.cache.get('svc:/n')).length === 1, 1000, 10))
  t.equal(await b.cache.purge('svc', null), 3, 'svc:/n, svc:/none and svc:/empty')
  t.ok(await until(async () => (await a.cache.get('svc:/n')).length === 0, 1000, 10), 'a purge reaches a within 1 s')
})

// The race the fleet test met on a loaded machine: an instance waiting for another's fetch kept a
// copy of "nothing", the fetch ended and let go of its lock, and the fill's message had not yet
// arrived; the waiter took the lock, looked at its copy, and fetched a second time.
t.test('a waiter\'s look reads Redis itself, past its near copy of nothing', async (t) => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix, 1024 * 1024)
  t.teardown(async () => { await a.cache.close(); await a.store.close(); await cleanRedis(prefix) })
  t.same(await a.cache.get('svc:/w'), [], 'nothing there, and kept as such')
  // Filled behind the store's back: no message reaches it, as when the message is still on its way.
  await a.store.connections.client.hset(`${prefix}cache:svc:/w`, 'v:', encodeEntry(entry('filled', { expiresAt: Date.now() + 60_000 })))
  t.same(await a.cache.get('svc:/w'), [], 'get still answers from the copy')
  t.equal((await a.cache.look('svc:/w'))[0]?.body.toString(), 'filled', 'look reads Redis')
  t.equal((await a.cache.get('svc:/w'))[0]?.body.toString(), 'filled', 'and what it read becomes the copy')
})

t.test('near copies stay within their byte bound', async (t) => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix, 4096)
  t.teardown(async () => { await a.cache.close(); await a.store.close(); await cleanRedis(prefix) })
  const raw = a.store.connections.client
  const big = 'x'.repeat(1500)
  for (const k of ['svc:/1', 'svc:/2', 'svc:/3']) {
    await a.cache.put(k, entry(big, { expiresAt: Date.now() + 60_000 }))
    await a.cache.get(k)
  }
  // Two copies fit (1,500 bytes + 256 each): the oldest was dropped, so only Redis can answer it.
  await raw.del(`${prefix}cache:svc:/1`, `${prefix}cache:svc:/3`)
  t.same(await a.cache.get('svc:/1'), [], 'the oldest copy was evicted')
  t.equal((await a.cache.get('svc:/3')).length, 1, 'the newest copy is kept')
  // What gateway_cache_bytes reports on Redis: the copies this process holds, within the bound.
  t.ok(a.cache.bytes() > 1500 && a.cache.bytes() <= 4096, `near copies hold ${a.cache.bytes()} bytes`)
  await a.cache.purge(null, null)
  t.equal(a.cache.bytes(), 0, 'a purge drops the copies')
})
