// A frozen invalidation subscriber (docs/admin-api.md#api-keys, docs/architecture.md#the-store, docs/admin-api.md#managing-services): a node that stops answering keeps its
// socket open and sends nothing, so without a heartbeat an instance kept honouring revoked keys and
// serving old services for seconds. The subscriber is pinged; silence is logged once, the
// connection replaced (in a Cluster, on another node), and the caches flushed on resubscribe.
import t from 'tap'
import { loadConfig } from '../../lib/config.js'
import { openStore, type StoreLog } from '../../plugins/store/index.js'
import { uniquePrefix } from '../support/app.js'
import { until } from '../support/basics.js'
import { startGateway, type GatewayProcess } from '../support/gateway-process.js'
import { admin, createKey, http } from '../support/http.js'
import { masterOf, rawCommand, startCluster, startRedis, type RedisServer } from '../support/redis-server.js'
import { service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'

/** Names of the subscribed clients of a node (CLIENT LIST: `sub=1` or more). */
async function subscriberNames (port: number): Promise<string[]> {
  const text = await rawCommand(port, 'CLIENT LIST', 2000) ?? ''
  return text.split('\n').filter((l) => /\bsub=[1-9]/.test(l)).map((l) => /\bname=(\S*)/.exec(l)?.[1] ?? '')
}

/** Polls until `accepted` turns false; the ms that took, or null after `limitMs`. */
async function msUntilRefused (accepted: () => Promise<boolean>, limitMs: number): Promise<number | null> {
  const started = performance.now()
  while (performance.now() - started < limitMs) {
    if (!await accepted()) return performance.now() - started
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return null
}

t.test('cluster: a frozen subscriber node is detected, and revocations and service changes apply within 1.5 s', async (t) => {
  // Without full coverage the other masters keep serving once the frozen node is marked failed.
  const cluster = await startCluster({ masters: 3, args: ['--cluster-require-full-coverage', 'no'] })
  t.teardown(() => cluster.stop())
  const keysNode = await masterOf(cluster, '{keys}')
  const servicesNode = await masterOf(cluster, '{services}')
  const frozen = cluster.servers.find((s) => s !== keysNode && s !== servicesNode) as RedisServer
  const others = cluster.servers.filter((s) => s !== frozen)
  const seeds = (first: RedisServer[]) => [...first, ...cluster.servers.filter((s) => !first.includes(s))].map((s) => `${s.host}:${s.port}`).join(',')

  const echo = await echoUpstream(t)
  const prefix = uniquePrefix()
  const env = (nodes: string) => ({
    STORAGE: 'redis',
    REDIS_CLUSTER_NODES: nodes,
    REDIS_KEY_PREFIX: prefix,
    SERVICES_SOURCE: 'store',
    RATE_LIMIT_BURST: '10000',
    RATE_LIMIT_RPM: '600000'
  })
  const services = [service('echo', '/api/echo', echo.url)]
  // The subscriber connects to the first seed: A's lands on the node about to freeze, B's elsewhere.
  const a = await startGateway(t, { services, env: env(seeds([frozen])) })
  const b = await startGateway(t, { services, env: env(seeds(others)) })
  t.ok(await until(async () => (await subscriberNames(frozen.port)).includes(`${prefix}subscriber`), 10_000), 'A subscribes on the node that will freeze')

  const key = await createKey(b.port, { name: 'frozen-subscriber' })
  const use = async (gw: GatewayProcess) => (await http(gw.port, '/api/echo/x', { headers: { 'x-api-key': key.raw } })).status
  t.equal(await use(a), 200, 'A verifies the key and caches it')

  frozen.pause()
  t.teardown(() => frozen.resume())
  const [revoked, put] = await Promise.all([
    admin(b.port, 'POST', `/admin/apikeys/${key.id}/revoke`),
    admin(b.port, 'PUT', '/admin/services/added', { prefix: '/api/added', backends: [{ url: echo.url }] })
  ])
  t.equal(revoked.status, 200, 'a key revoked through B')
  t.equal(put.status, 201, 'a service added through B')
  const [refusedMs, appliedMs] = await Promise.all([
    msUntilRefused(async () => await use(a) !== 401, 6000),
    msUntilRefused(async () => (await http(a.port, '/api/added/x')).status === 404, 6000)
  ])
  const ms = (v: number | null) => v === null ? 'more than 6000' : v.toFixed(0)
  t.comment(`A refused the revoked key after ${ms(refusedMs)} ms and applied the service change after ${ms(appliedMs)} ms`)
  t.ok(refusedMs !== null && refusedMs < 1500, 'A refuses the revoked key within 1.5 s')
  t.ok(appliedMs !== null && appliedMs < 1500, 'A applies the service change within 1.5 s')

  await a.logsSettled()
  const silent = a.logs.filter((l) => l.event === 'redis_subscriber_silent')
  t.equal(silent.length, 1, 'the silence is logged once')
  t.equal(silent[0]?.level, 40, 'as a warning')
  t.equal(silent[0]?.node, `${frozen.host}:${frozen.port}`, 'naming the node')
  const moved = a.logs.filter((l) => l.event === 'redis_subscriber_moved')
  t.equal(moved.length, 1, 'the move to another node is logged')
  t.match(moved[0], { level: 30, from: `${frozen.host}:${frozen.port}` })
  t.not(moved[0]?.to, moved[0]?.from)
  t.equal(b.logs.filter((l) => l.event === 'redis_subscriber_silent').length, 0, 'B, subscribed elsewhere, saw nothing wrong')
})

t.test('standalone: a frozen Redis silences the subscriber; it is logged once and the cache flushed once Redis answers', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const lines: Array<{ level: string, obj: Record<string, unknown> }> = []
  const log: StoreLog = {
    info: (obj) => { lines.push({ level: 'info', obj: obj as Record<string, unknown> }) },
    warn: (obj) => { lines.push({ level: 'warn', obj: obj as Record<string, unknown> }) }
  }
  const store = await openStore(loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() }, { dotenv: false }), { log })
  t.teardown(() => store.close())
  t.equal(await store.ping(), true)
  const heard: string[] = []
  store.keys.onInvalidate((hash) => heard.push(hash))
  const silent = () => lines.filter((l) => l.obj.event === 'redis_subscriber_silent')

  redis.pause()
  try {
    const frozenAt = performance.now()
    t.ok(await until(() => silent().length > 0, 5000, 20), 'the silence is noticed')
    t.comment(`noticed after ${(performance.now() - frozenAt).toFixed(0)} ms`)
    t.ok(performance.now() - frozenAt < 1500, 'within the heartbeat bound, not a TCP timeout')
    t.equal(silent()[0]?.level, 'warn')
    await new Promise((resolve) => setTimeout(resolve, 1500)) // reconnects to the frozen server go on failing
    t.equal(silent().length, 1, 'logged once however many reconnects find it frozen')
    t.same(heard, [], 'nothing flushed while nothing can be re-read')
  } finally {
    redis.resume()
  }
  t.ok(await until(() => heard.includes('*'), 5000, 20), 'every cached key is dropped once the subscription is back')
  t.equal(await store.ping(), true)
})
