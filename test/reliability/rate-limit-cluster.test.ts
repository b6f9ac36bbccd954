// The rate limiter on a Redis Cluster when one master fails over (docs/architecture.md#the-store, docs/proxying.md#rate-limits): only the buckets
// on the failed master fall back (RATE_LIMIT_FAIL_MODE), the others stay exact across instances.
// Two gateways listen on real sockets and share the cluster; each client address is its own bucket.
import t from 'tap'
import { listen, routesFile, uniquePrefix } from '../support/app.js'
import { startBackend } from '../support/backends.js'
import { until } from '../support/basics.js'
import { http } from '../support/http.js'
import { clusterMasters, masterOf, rawCommand, startCluster, type RedisCluster, type RedisServer } from '../support/redis-server.js'

const BURST = 8

/** Client addresses whose bucket (`{rl:ip:<address>}`) is served by `owner` / by another master. */
async function addressesBy (cluster: RedisCluster, owner: RedisServer, count: number): Promise<{ on: string[], off: string[] }> {
  const masters = await clusterMasters(cluster)
  const on: string[] = []
  const off: string[] = []
  for (let n = 2; n < 250 && (on.length < count || off.length < count); n++) {
    const address = `127.0.${n}.${n}`
    const slot = Number(/^:(\d+)/.exec(await rawCommand(cluster.servers[0].port, `CLUSTER KEYSLOT {rl:ip:${address}}`, 2000) ?? '')?.[1])
    const server = masters.find((m) => m.ranges.some(([lo, hi]) => slot >= lo && slot <= hi))?.server
    if (server === owner && on.length < count) on.push(address)
    else if (server !== owner && off.length < count) off.push(address)
  }
  return { on, off }
}

t.test('one master fails over: buckets on healthy masters stay exact across two instances; the failed one falls back', async (t) => {
  // Without full coverage the healthy masters serve throughout the failover; with it (Redis's
  // default) every node answers CLUSTERDOWN for about a second while the replica is promoted.
  const cluster = await startCluster({ masters: 3, replicas: 1, args: ['--cluster-require-full-coverage', 'no'] })
  t.teardown(() => cluster.stop())
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const env = {
    STORAGE: 'redis',
    REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(','),
    REDIS_KEY_PREFIX: uniquePrefix(),
    RATE_LIMIT_BURST: String(BURST),
    RATE_LIMIT_RPM: '1', // nothing refills while the test runs: every count is exact
    ROUTES_FILE: routesFile(t, [{ name: 'echo', prefix: '/api/echo', backends: [{ url: backend.url }] }])
  }
  const ports = await Promise.all([env, env, { ...env, RATE_LIMIT_FAIL_MODE: 'closed' }]
    .map(async (e) => Number(new URL((await listen(t, e)).url).port)))
  const [a, b, closed] = ports
  const keysNode = await masterOf(cluster, '{keys}')
  const servicesNode = await masterOf(cluster, '{services}')
  const victim = (await clusterMasters(cluster)).map((m) => m.server).find((s) => s !== keysNode && s !== servicesNode) as RedisServer
  const { on, off } = await addressesBy(cluster, victim, 6)
  const get = async (port: number, address: string) => await http(port, '/api/echo/x', { localAddress: address })
  for (const port of ports) t.equal((await get(port, off[0])).headers['x-ratelimit-limit'], String(BURST), 'the store answers before the failure')

  await victim.kill('SIGKILL')
  const killedAt = performance.now()
  // Each instance meets the failed master once (a take that times out), so it knows.
  for (const port of [a, b]) {
    const res = await get(port, on[0])
    t.equal(res.status, 200, 'a bucket on the failed master: admitted by the per-instance fallback (open)')
    t.equal(res.headers['x-ratelimit-limit'], undefined, 'without RateLimit fields')
  }
  const refused = await get(closed, on[0])
  t.equal(refused.status, 503, 'and refused with 503 by the instance in closed mode')
  t.equal((await get(closed, off[0])).status, 200, 'which still serves the healthy buckets')

  // Bursts on fresh buckets of healthy masters, alternating between the two instances, while the
  // failed master is down: exactly BURST admitted each time (before the fix: up to 2 × BURST).
  for (const address of off.slice(1, 4)) {
    const statuses: number[] = []
    for (let i = 0; i < 2 * BURST; i++) statuses.push((await get(i % 2 === 0 ? a : b, address)).status)
    t.equal(statuses.filter((s) => s === 200).length, BURST, `bucket ${address}: ${BURST} of ${2 * BURST} admitted (${(performance.now() - killedAt).toFixed(0)} ms after the kill)`)
    t.same(statuses.filter((s) => s !== 200 && s !== 429), [], 'every other answer is 429')
    await get(a, on[1]) // keeps the failed master's buckets in the fallback meanwhile
  }

  // Once the replica is promoted the failed master's buckets are exact again, on each instance as
  // soon as its own slot map names the new master (one instance may learn it a moment later).
  for (const port of [a, b]) {
    t.ok(await until(async () => (await get(port, on[2])).headers['x-ratelimit-limit'] !== undefined, 30_000), 'the promoted replica serves the failed master\'s buckets')
  }
  const statuses: number[] = []
  for (let i = 0; i < 2 * BURST; i++) statuses.push((await get(i % 2 === 0 ? a : b, on[3])).status)
  t.equal(statuses.filter((s) => s === 200).length, BURST, 'and a burst on them is exact across instances')
})
