// The Redis store on a Cluster with replicas when a master that does not hold the API keys fails
// over (docs/architecture.md#the-store, docs/admin-api.md#health-and-info): /ready stays 200 throughout (it is about the keys' slot, and every node
// answers CLUSTERDOWN for a moment while the replica is promoted), the failed node's outage and
// its return as a replica are logged once each, and no healthy node is ever logged as down.
import t from 'tap'
import { loadConfig } from '../../lib/config.js'
import { openStore, type StoreLog } from '../../plugins/store/index.js'
import { listen, uniquePrefix } from '../support/app.js'
import { until } from '../support/basics.js'
import { http } from '../support/http.js'
import { clusterMasters, masterOf, rawCommand, startCluster, type RedisCluster, type RedisServer } from '../support/redis-server.js'

const seeds = (cluster: RedisCluster) => cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')

/** True once `victim` serves no slot and the masters seen by `via` cover every slot again. */
async function failedOver (cluster: RedisCluster, victim: RedisServer, via: RedisServer): Promise<boolean> {
  if ((await rawCommand(via.port, 'CLUSTER INFO', 1000))?.includes('cluster_state:ok') !== true) return false
  const masters = await clusterMasters(cluster, via)
  const covered = masters.flatMap((m) => m.ranges).reduce((n, [lo, hi]) => n + hi - lo + 1, 0)
  return covered === 16384 && !masters.some((m) => m.server === victim)
}

t.test('a master without the API keys fails over: /ready never 503, the node is logged down once and restored as a replica', async (t) => {
  const cluster = await startCluster({ masters: 3, replicas: 1 })
  t.teardown(() => cluster.stop())
  const prefix = uniquePrefix()
  const env = { STORAGE: 'redis', REDIS_CLUSTER_NODES: seeds(cluster), REDIS_KEY_PREFIX: prefix }
  const { url } = await listen(t, env)
  const port = Number(new URL(url).port)
  const lines: Array<{ level: string, obj: Record<string, unknown> }> = []
  const log: StoreLog = {
    info: (obj) => { lines.push({ level: 'info', obj: obj as Record<string, unknown> }) },
    warn: (obj) => { lines.push({ level: 'warn', obj: obj as Record<string, unknown> }) }
  }
  const store = await openStore(loadConfig({ ADMIN_PASSWORD: 'x', ...env }, { dotenv: false }), { log })
  t.teardown(() => store.close())
  t.ok(await until(async () => (await http(port, '/ready')).status === 200, 10_000), 'ready with every node up')

  const keysNode = await masterOf(cluster, '{keys}')
  const victim = (await clusterMasters(cluster)).map((m) => m.server).find((s) => s !== keysNode) as RedisServer
  const node = `${victim.host}:${victim.port}`
  const statuses = new Map<number, number>()
  let clusterDownSeen = false
  await victim.kill('SIGKILL')
  const started = performance.now()
  let doneAt = Infinity
  while (performance.now() - doneAt < 1500 && performance.now() - started < 30_000) {
    const res = await http(port, '/ready')
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    if (JSON.stringify(res.json().store.warnings ?? []).includes('CLUSTERDOWN')) clusterDownSeen = true
    if (doneAt === Infinity && await failedOver(cluster, victim, keysNode)) doneAt = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  t.ok(doneAt < Infinity, `the replica took over after ${(doneAt - started).toFixed(0)} ms`)
  t.comment(`/ready answers during the failover: ${JSON.stringify(Object.fromEntries(statuses))}; CLUSTERDOWN seen: ${clusterDownSeen}`)
  t.same([...statuses.keys()], [200], '/ready answered 200 every time')
  t.ok((statuses.get(200) ?? 0) >= 20, 'probed throughout')

  await victim.restart()
  const restored = () => lines.filter((l) => l.obj.event === 'redis_node_restored' && l.obj.node === node)
  t.ok(await until(() => restored().length > 0, 20_000), 'the node coming back is logged')
  t.match(restored()[0], { level: 'info', obj: { as: 'replica', role: 'commands' } }, 'as a replica')
  const down = lines.filter((l) => l.obj.event === 'redis_node_down')
  t.same(down.map((l) => l.obj.node), [node], 'one outage line, for the killed node only (healthy replicas are never logged down)')
  t.equal(down[0]?.level, 'warn')
  t.equal(restored().length, 1, 'one recovery line')
})
