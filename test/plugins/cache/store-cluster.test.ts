// The Redis response cache store on a Redis Cluster (three masters started by the test): the same
// contract suite as on one Redis, with a second store on the same prefix as a second instance
// would open it. Entries of one URL are one key (one slot); a purge scans every master.
import t from 'tap'
import { loadConfig } from '../../../lib/config.js'
import { RedisCacheStore } from '../../../plugins/cache/store-redis.js'
import { openStore, type RedisStore } from '../../../plugins/store/index.js'
import { uniquePrefix } from '../../support/app.js'
import { startCluster } from '../../support/redis-server.js'
import { cacheStoreContract, entry, sharedPair } from './store.contract.js'

const cluster = await startCluster({ masters: 3 })
t.teardown(() => cluster.stop())
const seeds = cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')

async function openShared (prefix: string): Promise<{ store: RedisStore, cache: RedisCacheStore }> {
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_CLUSTER_NODES: seeds, REDIS_KEY_PREFIX: prefix }, { dotenv: false })
  const store = await openStore(config) as RedisStore
  return { store, cache: new RedisCacheStore({ ...store.connections, nearMaxBytes: 0 }) }
}

cacheStoreContract(t, async () => {
  const prefix = uniquePrefix()
  return sharedPair(await openShared(prefix), await openShared(prefix))
})

t.test('a purge finds the entries in every slot they were spread over (it scans each master)', async (t) => {
  const a = await openShared(uniquePrefix())
  t.teardown(async () => { await a.cache.close(); await a.store.close() })
  const keys = Array.from({ length: 30 }, (_, i) => `svc:/items/${i}`)
  for (const key of keys) await a.cache.put(key, entry(key, { expiresAt: Date.now() + 60_000 }))
  const client = a.store.connections.client
  const holders = new Set<string>()
  for (const key of keys) holders.add(String(await client.cluster('KEYSLOT', `${a.store.connections.keyPrefix}cache:${key}`)))
  t.ok(holders.size > 1, `the entries are spread over ${holders.size} slots`)
  t.equal(await a.cache.purge('svc', null), keys.length, 'every entry counted')
  for (const key of keys) t.same(await a.cache.get(key), [], `${key} is gone`)
})
