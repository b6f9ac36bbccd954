// The Redis store on a 3-master Cluster (no replicas) of our own when one master dies (docs/architecture.md#the-store,
// docs/admin-api.md#health-and-info): /ready follows the slot that holds the API keys, node failures are logged once each, and
// the key cache is flushed whenever the invalidation subscriber had to resubscribe.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../lib/config.js'
import { openStore } from '../../plugins/store/index.js'
import { build } from '../support/app.js'
import { rawCommand, startCluster, startRedis, type RedisCluster, type RedisServer } from '../support/redis-server.js'
import { until as poll } from '../support/basics.js'
import { makeKey } from '../plugins/store/contract.js'

const prefix = () => `gwtest:${randomBytes(4).toString('hex')}:`
const seeds = (cluster: RedisCluster) => cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')

// Cluster failover takes seconds: a longer default than the shared helper's.
const until = (check: () => Promise<boolean> | boolean, timeoutMs = 20_000) => poll(check, timeoutMs, 50)

/** The master serving `slot`, from CLUSTER NODES (`<id> <ip:port@bus> <flags> ... <ranges>`). */
async function ownerOf (cluster: RedisCluster, slot: number): Promise<RedisServer> {
  const text = await rawCommand(cluster.servers[0].port, 'CLUSTER NODES', 2000) ?? ''
  for (const line of text.split('\n')) {
    const parts = line.trim().split(' ')
    if (parts.length < 9 || !parts[2].includes('master')) continue
    const port = Number(parts[1].split('@')[0].split(':').at(-1))
    for (const range of parts.slice(8)) {
      const [lo, hi] = range.split('-').map(Number)
      if (slot >= lo && slot <= (hi ?? lo)) return cluster.servers.find((s) => s.port === port) as RedisServer
    }
  }
  throw new Error(`no master owns slot ${slot}`)
}

async function keysSlot (cluster: RedisCluster): Promise<number> {
  const reply = await rawCommand(cluster.servers[0].port, 'CLUSTER KEYSLOT {keys}', 2000)
  return Number(/^:(\d+)/.exec(reply ?? '')?.[1])
}

const ready = async (app: FastifyInstance) => (await app.inject('/ready')).statusCode

t.test('/ready turns 503 when the master holding the API keys slot dies', async (t) => {
  const cluster = await startCluster({ masters: 3 })
  t.teardown(() => cluster.stop())
  const app = await build(t, { STORAGE: 'redis', REDIS_CLUSTER_NODES: seeds(cluster), REDIS_KEY_PREFIX: prefix() })
  t.ok(await until(async () => await ready(app) === 200), 'ready with every master up')
  const owner = await ownerOf(cluster, await keysSlot(cluster))
  await owner.kill('SIGKILL')
  t.ok(await until(async () => await ready(app) === 503), '/ready 503 once the keys cannot be read')
  const after: number[] = []
  for (let i = 0; i < 10; i++) after.push(await ready(app))
  t.same(after, Array(10).fill(503), 'and stays 503, whichever node a command reaches')
  t.match((await app.inject('/ready')).json().store, { kind: 'redis', status: 'down' })
})

t.test('a master going down and coming back is logged once each, not once per retry', async (t) => {
  const cluster = await startCluster({ masters: 3 })
  t.teardown(() => cluster.stop())
  const lines: Array<{ level: string, obj: Record<string, unknown>, msg: string }> = []
  const log = {
    debug: (obj: object, msg: string) => { lines.push({ level: 'debug', obj: obj as Record<string, unknown>, msg }) },
    info: (obj: object, msg: string) => { lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }) },
    warn: (obj: object, msg: string) => { lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }) }
  }
  const store = await openStore(loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_CLUSTER_NODES: seeds(cluster), REDIS_KEY_PREFIX: prefix() }, { dotenv: false }), { log })
  t.teardown(() => store.close())
  t.equal(await store.ping(), true)
  const owner = await ownerOf(cluster, await keysSlot(cluster))
  const node = `127.0.0.1:${owner.port}`
  const about = (event: string) => lines.filter((l) => l.obj.event === event && l.obj.node === node && l.obj.role === 'commands')

  await owner.kill('SIGKILL')
  t.ok(await until(async () => { await store.ping(); return about('redis_node_down').length > 0 }), 'the node going down is logged')
  // Keep the client retrying the dead node for a while: each attempt fails again.
  for (let i = 0; i < 20; i++) await store.ping()
  await owner.restart()
  t.ok(await until(async () => { await store.ping(); return about('redis_node_restored').length > 0 }), 'its return is logged')
  t.ok(await until(async () => await store.ping()), 'and the store reads the keys again')
  const down = about('redis_node_down')
  t.equal(down.length, 1, 'one line for the outage')
  t.equal(down[0].level, 'warn')
  t.equal(about('redis_node_restored').length, 1, 'one line for the recovery')
  t.equal(about('redis_node_restored')[0].level, 'info')
})

/** The clients of a node that are subscribed (CLIENT LIST: `sub=1` or more). */
async function subscribers (port: number): Promise<Array<{ id: string, name: string }>> {
  const text = await rawCommand(port, 'CLIENT LIST', 2000) ?? ''
  return text.split('\n').filter((l) => /\bsub=[1-9]/.test(l))
    .map((l) => ({ id: /\bid=(\d+)/.exec(l)?.[1] ?? '', name: /\bname=(\S*)/.exec(l)?.[1] ?? '' }))
}

t.test('standalone: the key cache is flushed when the subscriber connection is killed and resubscribes', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const p = prefix()
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: p }, { dotenv: false })
  const store = await openStore(config)
  t.teardown(() => store.close())
  const heard: string[] = []
  store.keys.onInvalidate((hash) => heard.push(hash))
  const [sub] = (await subscribers(redis.port)).filter((c) => c.name === `${p}subscriber`)
  t.ok(sub !== undefined, 'the subscriber connection has a name to find it by')
  for (let round = 1; round <= 2; round++) {
    const [current] = (await subscribers(redis.port)).filter((c) => c.name === `${p}subscriber`)
    await rawCommand(redis.port, `CLIENT KILL ID ${current?.id ?? sub.id}`)
    t.ok(await until(() => heard.filter((h) => h === '*').length === round), `round ${round}: every cached key is dropped after the resubscribe`)
    t.ok(await until(async () => (await subscribers(redis.port)).some((c) => c.name === `${p}subscriber`)), `round ${round}: subscribed again`)
  }
  // Another instance (its own subscriber carries the same name, so it comes only now).
  const peer = await openStore(config)
  t.teardown(() => peer.close())
  const key = makeKey()
  await peer.keys.create(key)
  await peer.keys.revoke(key.id)
  t.ok(await until(() => heard.includes(key.hash)), 'and revocations are heard again')
})

t.test('cluster: the key cache is flushed when the subscriber\'s node dies and the subscriber moves to another', async (t) => {
  const cluster = await startCluster({ masters: 3 })
  t.teardown(() => cluster.stop())
  const p = prefix()
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_CLUSTER_NODES: seeds(cluster), REDIS_KEY_PREFIX: p }, { dotenv: false })
  const store = await openStore(config)
  t.teardown(() => store.close())
  const heard: string[] = []
  store.keys.onInvalidate((hash) => heard.push(hash))
  let node: RedisServer | undefined
  t.ok(await until(async () => {
    for (const s of cluster.servers) if ((await subscribers(s.port)).length > 0) node = s
    return node !== undefined
  }), 'the subscriber is on one node')
  // Not the node of the API keys: the store stays usable and only the subscription is hit.
  const keysOwner = await ownerOf(cluster, await keysSlot(cluster))
  t.not(node, undefined)
  if (node === keysOwner) t.comment('the subscriber shares the keys node')
  await (node as RedisServer).kill('SIGKILL')
  t.ok(await until(() => heard.includes('*'), 30_000), 'every cached key is dropped once the subscriber has resubscribed')
  t.ok(await until(async () => {
    for (const s of cluster.servers) if (s !== node && (await subscribers(s.port)).length > 0) return true
    return false
  }), 'subscribed on another node')
})
