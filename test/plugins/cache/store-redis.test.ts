// The Redis response cache store against the real Redis at REDIS_URL: the contract suite, with a
// second store on the same prefix as a second instance would open it.
import t from 'tap'
import { loadConfig } from '../../../lib/config.js'
import { RedisCacheStore } from '../../../plugins/cache/store-redis.js'
import { openStore, type RedisStore } from '../../../plugins/store/index.js'
import { cleanRedis, REDIS_URL, uniquePrefix } from '../../support/app.js'
import { cacheStoreContract, entry } from './store.contract.js'

async function openShared (prefix: string): Promise<{ store: RedisStore, cache: RedisCacheStore }> {
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: prefix }, { dotenv: false })
  const store = await openStore(config) as RedisStore
  return { store, cache: new RedisCacheStore(store.connections) }
}

cacheStoreContract(t, async () => {
  const prefix = uniquePrefix()
  const a = await openShared(prefix)
  const b = await openShared(prefix)
  return {
    store: a.cache,
    peer: b.cache,
    async cleanup () {
      await Promise.all([a.cache.close(), b.cache.close()])
      await Promise.all([a.store.close(), b.store.close()])
      await cleanRedis(prefix)
    }
  }
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
