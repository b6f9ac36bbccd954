// The Redis store on a 3-master Redis Cluster of our own (REDIS_CLUSTER_NODES): the same contract,
// so every multi-key script and pipeline stays within one slot, and pub/sub reaches every instance.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { loadConfig } from '../../../lib/config.js'
import { openStore } from '../../../plugins/store/index.js'
import type { Store } from '../../../plugins/store/types.js'
import { startCluster } from '../../support/redis-server.js'
import { makeKey, sharedStores, storeContract } from './contract.js'

const cluster = await startCluster({ masters: 3 })
t.teardown(() => cluster.stop())
const nodes = cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')

const open = async (prefix: string): Promise<Store> => await openStore(loadConfig({
  ADMIN_PASSWORD: 'x',
  STORAGE: 'redis',
  REDIS_CLUSTER_NODES: nodes,
  REDIS_KEY_PREFIX: prefix
}, { dotenv: false }))

// The cluster is ours and thrown away afterwards: no key cleanup needed.
storeContract(t, async () => await sharedStores(open, `gwtest:${randomBytes(4).toString('hex')}:`), { shared: true })

t.test('instances connected to different cluster nodes share keys and revocations', async (t) => {
  const prefix = `gwtest:${randomBytes(4).toString('hex')}:`
  const env = (node: { host: string, port: number }) => loadConfig({
    ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_CLUSTER_NODES: `${node.host}:${node.port}`, REDIS_KEY_PREFIX: prefix
  }, { dotenv: false })
  const a = await openStore(env(cluster.nodes[0]))
  const b = await openStore(env(cluster.nodes[2]))
  t.teardown(async () => { await a.close(); await b.close() })
  t.equal(await a.ping(), true)
  const key = makeKey()
  await a.keys.create(key)
  t.same(await b.keys.findByHash(key.hash), key)
  const heard = new Promise<string>((resolve) => b.keys.onInvalidate(resolve))
  await a.keys.revoke(key.id)
  t.equal(await heard, key.hash)
  // Buckets and failure counters hash to whatever slot: they work from any entry node.
  for (let i = 0; i < 20; i++) t.equal((await b.buckets.take(`client-${i}`, 5, 60)).allowed, true)
  t.equal((await a.failures.reserve('203.0.113.7', 10, 60_000)).count, 1)
  t.equal((await b.failures.reserve('203.0.113.7', 10, 60_000)).count, 2)
})
