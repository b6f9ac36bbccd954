// The `store` plugin (docs/architecture.md#the-store): builds the configured back end and decorates `fastify.store`.
//
// Redis connections are built here rather than through @fastify/redis: its registration waits for
// the client's `ready` event (and quits the client on ENOTFOUND), so with Redis down the gateway
// would never boot, while docs/architecture.md#the-store and FT-09 (docs/reliability.md) require it to start, answer
// /ready 503 and pick Redis up when it returns. The clients are ours, closed in onClose.
import fp from 'fastify-plugin'
import { performance } from 'node:perf_hooks'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Config } from '../../lib/config.js'
import { MemoryBuckets } from './buckets-memory.js'
import { RedisBuckets } from './buckets-redis.js'
import { keySlot } from './cluster-slot.js'
import { MemoryFailureCounter, SqliteKeyStore } from './embedded.js'
import { RedisFailureCounter, RedisKeyStore } from './redis-keys.js'
import { RedisServiceStore } from './services-redis.js'
import { isFailedSubscribe } from './redis-subscription.js'
import { SqliteServiceStore } from './services-sqlite.js'
import { SqliteQuotas } from './quotas-sqlite.js'
import { RedisQuotas } from './quotas-redis.js'
import type { Store } from './types.js'

// The in-process structures other plugins build on: the rate limiter's fallback buckets and the
// admin login throttle's local counter.
export { MemoryBuckets } from './buckets-memory.js'
export { MemoryFailureCounter } from './embedded.js'
export { MemoryQuotas } from './quotas-memory.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: Store
  }
}

type Client = Redis | Cluster
/** The two logger methods the store uses (fastify.log fits). */
export interface StoreLog {
  debug? (obj: object, msg: string): void
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
}
type Log = StoreLog

const silent: Log = { info () {}, warn () {} }
/** A Redis outage is logged once, then at most this often while it lasts. */
const LOG_EVERY_MS = 10_000
/** A SUBSCRIBE Redis refused is asked again this often (watchSubscriber). */
const RESUBSCRIBE_EVERY_MS = 5000
/**
 * The subscriber is pinged this often, and counts as silent when a PING (or, before 'ready', the
 * connection's handshake) is not answered within HEARTBEAT_DEADLINE_MS. From a node freezing to
 * the caches being flushed: at most about 200 + 300 ms, one reconnect delay (100 ms) and a
 * handshake, inside the one second revocations and service changes are promised in.
 */
const HEARTBEAT_EVERY_MS = 200
const HEARTBEAT_DEADLINE_MS = 300
/** While a Cluster node is down, it is asked this often whether it answers again. */
const NODE_CHECK_EVERY_MS = 1000

export interface StoreOptions {
  log?: Log
}

export function createStore (config: Config, opts: StoreOptions = {}): Store {
  return config.storage === 'redis' ? createRedisStore(config, opts) : createEmbeddedStore(config)
}

/**
 * createStore, then (Redis) wait up to `waitMs` for the connections, so the first requests after
 * boot find Redis connected. Never fails on an unreachable Redis: the gateway starts anyway.
 */
export async function openStore (config: Config, opts: StoreOptions & { waitMs?: number } = {}): Promise<Store> {
  const store = createStore(config, opts)
  if (store instanceof RedisStore) await store.whenConnected(opts.waitMs ?? 2000)
  return store
}

export function createEmbeddedStore (config: Config): Store {
  const keys = new SqliteKeyStore({ dataDir: config.dataDir })
  const services = new SqliteServiceStore({ dataDir: config.dataDir })
  const buckets = new MemoryBuckets()
  const quotas = new SqliteQuotas({ dataDir: config.dataDir })
  let closed = false
  return {
    kind: 'embedded',
    keys,
    services,
    buckets,
    failures: new MemoryFailureCounter(),
    quotas,
    warnings: [],
    async ping () { return !closed && keys.ping() },
    async close () {
      if (closed) return
      closed = true
      await buckets.close()
      services.close()
      quotas.close()
      keys.close()
    }
  }
}

/** Command timeout: above the rate limiter's own race (it gives up first), and never below 500 ms. */
export function commandTimeoutMs (config: Config): number {
  return Math.max(500, config.rateLimit.storeTimeoutMs + 100)
}

export function createRedisStore (config: Config, opts: StoreOptions = {}): RedisStore {
  return new RedisStore(config, opts.log ?? silent)
}

export class RedisStore implements Store {
  readonly kind = 'redis'
  readonly keys: RedisKeyStore
  readonly services: RedisServiceStore
  readonly buckets: RedisBuckets
  readonly failures: RedisFailureCounter
  readonly quotas: RedisQuotas
  readonly #client: Client
  readonly #subscriber: Redis
  readonly #pingTimeoutMs: number
  readonly #log: Log
  readonly #target: string
  /** Cluster: the slot of the API key records, which /ready is about. */
  readonly #keysSlot: number
  readonly #keyPrefix: string
  readonly #stopWatching: Array<() => void> = []
  #closed = false
  #clusterDown = false
  #warnings: readonly string[] = []

  constructor (config: Config, log: Log) {
    const { client, subscriber, target } = buildClients(config)
    watch(client, 'commands', target, log)
    watch(subscriber, 'subscriber', target, log)
    const closed = () => this.#closed
    if (client instanceof Cluster) this.#stopWatching.push(watchNodes(client, 'commands', log, closed))
    this.#stopWatching.push(watchSubscriber(subscriber, log, closed))
    // At start and after every reconnect (docs/architecture.md#the-store).
    client.on('ready', () => { this.#checkEvictionPolicy().catch(() => {}) })
    client.connect().catch(() => {}) // failures reach the 'error' listener; reconnection goes on
    subscriber.connect().catch(() => {})
    this.#client = client
    this.#subscriber = subscriber
    this.#pingTimeoutMs = commandTimeoutMs(config)
    this.#log = log
    this.#target = target
    const keyPrefix = config.redis.keyPrefix
    this.#keyPrefix = keyPrefix
    this.#keysSlot = keySlot(`${keyPrefix}{keys}`)
    this.keys = new RedisKeyStore({ client, subscriber, keyPrefix })
    this.services = new RedisServiceStore({ client, subscriber, keyPrefix })
    this.buckets = new RedisBuckets(client, { keyPrefix, leases: config.rateLimit.leases ? {} : false })
    this.failures = new RedisFailureCounter(client, { keyPrefix })
    this.quotas = new RedisQuotas(client, { keyPrefix })
  }

  /**
   * The command and subscriber connections and the key prefix, for a plugin that keeps records of
   * its own in the same Redis (the response cache, plugins/cache/store-redis.ts). The store still
   * owns and closes them.
   */
  get connections (): { client: Client, subscriber: Redis, keyPrefix: string } {
    return { client: this.#client, subscriber: this.#subscriber, keyPrefix: this.#keyPrefix }
  }

  /** Resolves true once commands can run and both change channels (keys, services) are subscribed, false after waitMs. */
  async whenConnected (waitMs: number): Promise<boolean> {
    const client = this.#client
    const ready = client.status === 'ready'
      ? Promise.resolve()
      : new Promise<void>((resolve) => client.once('ready', () => resolve()))
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => { timer = setTimeout(resolve, waitMs, false) })
    try {
      return await Promise.race([Promise.all([ready, this.keys.subscribed, this.services.subscribed]).then(() => true), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async ping (): Promise<boolean> {
    if (this.#closed || this.#client.status !== 'ready') return false
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => { timer = setTimeout(resolve, this.#pingTimeoutMs, false) })
    try {
      return await Promise.race([this.#probe(), timeout]) === true
    } catch {
      return false
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Standalone: a read of the API keys. Cluster: the same read sent straight to the master serving
   * the keys' slot. A Cluster client retries `CLUSTERDOWN` until its command times out, and every
   * node answers it while any master is being failed over (cluster-require-full-coverage, the
   * default), so through the client /ready would turn 503 during the failover of a master that
   * holds no key. Asked directly, the keys' own master answering (CLUSTERDOWN included) is what
   * "the key store is reachable" means; a dead or frozen keys master still fails the probe.
   */
  async #probe (): Promise<boolean> {
    const client = this.#client
    const owner = client instanceof Cluster ? nodeServing(client, this.#keysSlot) : undefined
    if (owner !== undefined) {
      try {
        const up = await this.keys.probe(owner)
        this.#clusterDown = false
        return up
      } catch (err) {
        const reply = String((err as Error).message)
        if (reply.startsWith('CLUSTERDOWN')) {
          this.#clusterDown = true
          return true
        }
        // A stale slot map (MOVED/ASK): the client follows redirections itself.
        if (!reply.startsWith('MOVED') && !reply.startsWith('ASK')) throw err
      }
    }
    const up = await this.keys.probe()
    this.#clusterDown = false
    return up
  }

  get warnings (): readonly string[] {
    if (!this.#clusterDown) return this.#warnings
    return [...this.#warnings, 'Redis Cluster answers CLUSTERDOWN (a failed master is being replaced): keys this instance has not verified recently get 503 until it ends']
  }

  /**
   * API key records carry no TTL, so `volatile-*` policies never evict them, but any `allkeys-*`
   * policy can, under memory pressure: keys would vanish (401) without anyone revoking them.
   */
  async #checkEvictionPolicy (): Promise<void> {
    const nodes: Redis[] = this.#client instanceof Cluster ? this.#client.nodes('master') : [this.#client]
    const warnings: string[] = []
    for (const node of nodes) {
      const where = this.#client instanceof Cluster ? `${node.options.host ?? ''}:${node.options.port ?? ''}` : this.#target
      let policy: string
      try {
        const reply = await node.config('GET', 'maxmemory-policy') as unknown
        policy = String(Array.isArray(reply) ? reply[1] : (reply as Record<string, unknown>)['maxmemory-policy'])
      } catch (err) {
        // Managed Redis services often refuse CONFIG: nothing to check then.
        this.#log.debug?.({ redis: where, reason: (err as Error).message }, 'cannot read maxmemory-policy (CONFIG refused); eviction policy not checked')
        continue
      }
      if (!policy.startsWith('allkeys-')) continue
      const warning = `Redis maxmemory-policy is ${policy} (${where}): it can evict the gateway's API keys under memory pressure; set maxmemory-policy noeviction`
      warnings.push(warning)
      this.#log.warn({ event: 'redis_eviction_policy', redis: where, maxmemory_policy: policy }, warning)
    }
    this.#warnings = warnings
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const stop of this.#stopWatching) stop()
    await this.buckets.close()
    await Promise.all([closeClient(this.#subscriber), closeClient(this.#client)])
  }
}

function buildClients (config: Config): { client: Client, subscriber: Redis, target: string } {
  const r = config.redis
  // Fail fast instead of queueing (ioredis's defaults hold a command for seconds while Redis is
  // down): no offline queue, one retry, a command timeout, no replay of unanswered (possibly
  // non-idempotent) scripts after a reconnect (docs/reliability.md, FT-12).
  const fast: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs(config),
    socketTimeout: 2000,
    connectTimeout: 2000,
    autoResendUnfulfilledCommands: false,
    lazyConnect: true,
    retryStrategy: reconnectDelay
  }
  // The subscriber only waits for messages: it may queue SUBSCRIBE until Redis is back.
  const patient: RedisOptions = {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
    socketTimeout: undefined
  }
  const tls = r.url?.startsWith('rediss://') === true ? {} : undefined

  if (r.clusterNodes !== null) {
    // Cluster-level queueing, laziness and reconnection; the node connections get the timeouts.
    const options = (nodeOptions: RedisOptions, offlineQueue: boolean): ClusterOptions => {
      const { lazyConnect, retryStrategy, enableOfflineQueue, ...perNode } = nodeOptions
      return {
        enableOfflineQueue: offlineQueue,
        lazyConnect: true,
        clusterRetryStrategy: reconnectDelay,
        slotsRefreshTimeout: 1000,
        redisOptions: { ...perNode, password: r.password ?? undefined, tls }
      }
    }
    const nodes = r.clusterNodes.map((n) => ({ host: n.host, port: n.port }))
    const client = new Cluster(nodes, options({ ...fast, connectionName: `${r.keyPrefix}commands` }, false))
    return {
      client,
      subscriber: clusterSubscriber(client, nodes, { ...fast, ...patient, password: r.password ?? undefined, tls, connectionName: `${r.keyPrefix}subscriber` }),
      target: `cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
    }
  }

  if (r.url !== null) {
    const url = new URL(r.url)
    const extra: RedisOptions = url.password === '' && r.password !== null ? { password: r.password } : {}
    return {
      client: new Redis(r.url, { ...fast, ...extra, connectionName: `${r.keyPrefix}commands` }),
      subscriber: new Redis(r.url, { ...fast, ...patient, ...extra, connectionName: `${r.keyPrefix}subscriber` }),
      target: `${url.protocol}//${url.host}` // never the credentials
    }
  }

  const base: RedisOptions = { host: r.host, port: r.port, db: r.db, password: r.password ?? undefined }
  return {
    client: new Redis({ ...fast, ...base, connectionName: `${r.keyPrefix}commands` }),
    subscriber: new Redis({ ...fast, ...patient, ...base, connectionName: `${r.keyPrefix}subscriber` }),
    target: `redis://${r.host}:${r.port}`
  }
}

/**
 * The invalidation subscriber of a Cluster: one plain connection to one node, since a PUBLISH
 * reaches every node of a Cluster. ioredis's Cluster subscriber moves to another node by itself
 * and resubscribes without telling anyone, so revocations published in between were missed
 * silently; this connection's own 'close' and 'ready' show every resubscription (RedisKeyStore
 * then drops every cached key). Each reconnect attempt goes to the next known node, so a dead
 * node does not keep the subscription down.
 */
function clusterSubscriber (cluster: Cluster, seeds: Array<{ host: string, port: number }>, options: RedisOptions): Redis {
  let next = 0
  const subscriber: Redis = new Redis({
    ...options,
    host: seeds[0].host,
    port: seeds[0].port,
    retryStrategy (times) {
      const known = cluster.nodes('master').map((n) => ({ host: n.options.host ?? seeds[0].host, port: n.options.port ?? seeds[0].port }))
      const candidates = known.length > 0 ? known : seeds
      // Never straight back to the node just left (it may be the one that froze).
      const left = `${subscriber.options.host ?? ''}:${subscriber.options.port ?? ''}`
      let node = candidates[++next % candidates.length]
      if (candidates.length > 1 && `${node.host}:${node.port}` === left) node = candidates[++next % candidates.length]
      // The connector reads host and port from these options at every connect.
      subscriber.options.host = node.host
      subscriber.options.port = node.port
      return reconnectDelay(times)
    }
  })
  return subscriber
}

/** Reconnect forever: 100 ms, 200 ms, ... capped at 1 s, so a returning Redis is used within ~1 s. */
function reconnectDelay (times: number): number {
  return Math.min(100 * times, 1000)
}

/** An 'error' listener is mandatory (an unhandled one crashes the process); logs are throttled. */
function watch (conn: Client, role: string, target: string, log: Log): void {
  let down = false
  let lastLog = 0
  conn.on('error', (err: NodeJS.ErrnoException) => {
    // A failed SUBSCRIBE is not an outage: watchSubscriber says so and asks again.
    if (isFailedSubscribe(err)) return
    const now = Date.now()
    if (!down || now - lastLog >= LOG_EVERY_MS) {
      lastLog = now
      log.warn({ redis: target, role, code: err.code }, `redis unavailable: ${err.message}`)
    }
    down = true
  })
  conn.on('ready', () => {
    if (down) log.info({ redis: target, role }, 'redis connection restored')
    down = false
  })
}

/**
 * A subscriber connection whose node froze (SIGSTOP, a half-open TCP path) keeps its socket and
 * reports nothing: messages stop and nobody notices. So it is pinged every HEARTBEAT_EVERY_MS
 * (PING is allowed on a subscribed connection); an unanswered PING, or a connection stuck in its
 * handshake, for HEARTBEAT_DEADLINE_MS counts as silent: logged once (warn), then the connection
 * is dropped and ioredis reconnects (a Cluster subscriber to another node). Its resubscription
 * then flushes the key cache and catches the service table up (RedisKeyStore, RedisServiceStore).
 * A move to another Cluster node is logged too. Returns the function that stops the heartbeat.
 */
function watchSubscriber (subscriber: Redis, log: Log, closed: () => boolean): () => void {
  const nodeOf = () => `${subscriber.options.host ?? '127.0.0.1'}:${subscriber.options.port ?? 6379}`
  let node = nodeOf() // the node of the current (or last) connection
  let readyOn: string | null = null
  let connectedAt = -1
  let pinging = false
  let silent = false

  const drop = (reason: string): void => {
    if (closed()) return
    if (!silent) {
      silent = true
      log.warn({ event: 'redis_subscriber_silent', node, role: 'subscriber', deadline_ms: HEARTBEAT_DEADLINE_MS },
        `redis subscriber on ${node} silent (${reason}): reconnecting, cached keys and services are refreshed on resubscribe`)
    }
    // Not disconnect(): it ends the socket gracefully and waits up to 2 s for a peer that will
    // never answer. Destroying it makes ioredis reconnect at once, as after any lost connection.
    subscriber.stream.destroy()
  }

  subscriber.on('connect', () => {
    node = nodeOf()
    connectedAt = performance.now()
  })
  subscriber.on('ready', () => {
    connectedAt = -1
    if (readyOn !== null && readyOn !== node) {
      log.info({ event: 'redis_subscriber_moved', from: readyOn, to: node, role: 'subscriber' }, `redis subscriber moved from ${readyOn} to ${node}`)
    }
    readyOn = node
  })
  subscriber.on('close', () => { connectedAt = -1 })

  // ioredis forgets the channels of a SUBSCRIBE that failed (Redis refused it: an ACL without
  // them; or the connection dropped before the answer), and so would never subscribe them again:
  // they are asked for every RESUBSCRIBE_EVERY_MS until it succeeds. Then the connection is
  // replaced, so the caches catch up as after any reconnect.
  const refused = new Set<string>()
  let resubscribe: NodeJS.Timeout | null = null
  const askAgainLater = (): void => {
    resubscribe = setTimeout(askAgain, RESUBSCRIBE_EVERY_MS)
    resubscribe.unref()
  }
  const askAgain = (): void => {
    if (closed()) return
    const channels = [...refused]
    subscriber.subscribe(...channels).then(() => {
      for (const channel of channels) refused.delete(channel)
      log.info({ event: 'redis_subscription_restored', node, role: 'subscriber', channels }, 'redis subscription to the change channels restored')
      subscriber.stream.destroy()
      if (refused.size > 0) askAgainLater()
      else resubscribe = null
    }, askAgainLater)
  }
  subscriber.on('error', (err: Error) => {
    if (!isFailedSubscribe(err) || closed()) return
    const channels = err.command.args.map(String)
    for (const channel of channels) refused.add(channel)
    if (resubscribe !== null) return
    log.warn({ event: 'redis_subscription_refused', node, role: 'subscriber', channels },
      `redis subscription to the change channels failed (${err.message}): changes made on other instances are not heard until it succeeds (cached API keys are still re-read every few seconds); asking again every ${RESUBSCRIBE_EVERY_MS / 1000} s`)
    askAgainLater()
  })

  const beat = (): void => {
    if (subscriber.status === 'connect' && connectedAt >= 0 && performance.now() - connectedAt > HEARTBEAT_DEADLINE_MS) {
      return drop(`no answer to the connection handshake within ${HEARTBEAT_DEADLINE_MS} ms`)
    }
    if (subscriber.status !== 'ready' || pinging) return
    pinging = true
    let answered = false
    // Checked after the poll phase: after an event-loop stall, an answer waiting in the socket
    // must win over the deadline that expired in the same turn.
    const deadline = setTimeout(() => setImmediate(() => {
      if (!answered && pinging) drop(`no answer to PING within ${HEARTBEAT_DEADLINE_MS} ms`)
    }), HEARTBEAT_DEADLINE_MS)
    subscriber.ping().then(() => { silent = false }, () => {}).finally(() => {
      answered = true
      pinging = false
      clearTimeout(deadline)
    })
  }
  const timer = setInterval(beat, HEARTBEAT_EVERY_MS)
  timer.unref()
  return () => {
    clearInterval(timer)
    if (resubscribe !== null) clearTimeout(resubscribe)
  }
}

/** The master connection serving `slot` in the client's slot map, if the client has one. */
function nodeServing (cluster: Cluster, slot: number): Redis | undefined {
  const key = cluster.slots[slot]?.[0]
  if (key === undefined) return undefined
  return cluster.nodes('master').find((n) => `${n.options.host ?? ''}:${n.options.port ?? ''}` === key)
}

/**
 * A Cluster client emits no 'error' when one node fails: it reports `node error` and `-node` for
 * that node, again on every retry and slot refresh. Each node's outage and recovery is logged once.
 * `-node` also comes when the client merely drops a node from its pool (a replica the slot map
 * does not list, a stale connection replaced): the node is asked first, and only a node that does
 * not answer is down. A node the client no longer uses (a failed master that returns as a
 * replica) never reconnects through the client, so down nodes are asked every
 * NODE_CHECK_EVERY_MS until they answer. Returns the function that stops the checks.
 */
function watchNodes (cluster: Cluster, role: string, log: Log, closed: () => boolean): () => void {
  const down = new Set<string>()
  const nodeKey = (r: Redis) => `${r.options.host ?? '127.0.0.1'}:${r.options.port ?? 6379}`
  const lost = (node: string, reason: string, code?: string): void => {
    if (closed() || down.has(node)) return
    down.add(node)
    log.warn({ event: 'redis_node_down', node, role, code }, `redis cluster node ${node} unavailable: ${reason}`)
  }
  const restored = (node: string, as: string): void => {
    if (!closed() && down.delete(node)) log.info({ event: 'redis_node_restored', node, role, as }, `redis cluster node ${node} restored (${as})`)
  }
  cluster.on('node error', (err: NodeJS.ErrnoException, node: string) => lost(node, err.message, err.code))
  cluster.on('-node', (r: Redis) => {
    const node = nodeKey(r)
    if (closed() || down.has(node)) return
    nodeRole(cluster, node).then((as) => { if (as === null) lost(node, 'connection closed') }, () => {})
  })
  cluster.on('+node', (r: Redis) => {
    const node = nodeKey(r)
    r.on('ready', () => restored(node, r.options.readOnly === true ? 'replica' : 'master'))
  })
  let checking = false
  const timer = setInterval(() => {
    if (checking || down.size === 0 || closed()) return
    checking = true
    Promise.all([...down].map(async (node) => {
      const as = await nodeRole(cluster, node)
      if (as !== null) restored(node, as)
    })).finally(() => { checking = false })
  }, NODE_CHECK_EVERY_MS)
  timer.unref()
  return () => { clearInterval(timer) }
}

/** Asks `node` its ROLE on a short-lived connection: 'master', 'replica', or null (no answer). */
async function nodeRole (cluster: Cluster, node: string): Promise<string | null> {
  const at = node.lastIndexOf(':')
  const conn = new Redis({
    ...cluster.options.redisOptions,
    host: node.slice(0, at),
    port: Number(node.slice(at + 1)),
    lazyConnect: true,
    enableOfflineQueue: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: NODE_CHECK_EVERY_MS,
    commandTimeout: NODE_CHECK_EVERY_MS
  })
  conn.on('error', () => {})
  try {
    const reply = await conn.role() as unknown[]
    return reply[0] === 'slave' ? 'replica' : String(reply[0])
  } catch {
    return null
  } finally {
    conn.disconnect()
  }
}

async function closeClient (conn: Client): Promise<void> {
  if (conn.status === 'ready') {
    try {
      await conn.quit()
      return
    } catch {}
  }
  conn.disconnect()
}

export default fp(async function store (fastify) {
  const store = await openStore(fastify.config, { log: fastify.log })
  fastify.decorate('store', store)
  fastify.addHook('onClose', async () => { await store.close() })
}, { name: 'store', fastify: '5.x', dependencies: ['config'] })
