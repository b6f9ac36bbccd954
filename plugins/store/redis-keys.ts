// API keys and failure counters in Redis (docs/architecture.md#the-store). Layout, all under KEY_PREFIX and hash-tagged
// `{keys}` so every script touches one Cluster slot:
//   <p>{keys}:h:<sha256>   hash: the record (null fields absent; services as JSON; active 1/0)
//   <p>{keys}:id:<id>      string: the record's sha256 (id -> record)
//   <p>{keys}:all          zset: sha256 scored by created_at (ms), for list()
//   <p>fail:<id>           integer with a TTL: one fixed failure window
// The record lives under its hash so the hot path (findByHash) is one HGETALL. Writes are Lua
// scripts (atomic); revoke and delete PUBLISH the hash on <p>invalidate, which every instance
// hears through its own subscriber connection.
import type { Cluster, Redis } from 'ioredis'
import type { ApiKeyRecord, FailureCounter, KeyStore, Reservation, StoredApiKey } from './types.js'
import { subscribeChannel } from './redis-subscription.js'

type Client = Redis | Cluster

const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1`

const REVOKE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'active', '0')
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1`

const DELETE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1`

const TOUCH = `
if redis.call('GET', KEYS[2]) == ARGV[1] and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[2])
end
return 1`

// Check and take in one script, so instances racing on one address never pass `max` between
// them; the TTL is set by the reservation that opens the window (a full window keeps its end).
const RESERVE = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local allowed = 0
if count < tonumber(ARGV[2]) then
  count = redis.call('INCR', KEYS[1])
  allowed = 1
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {allowed, count, ttl}`

// DECR keeps the key's TTL: giving an attempt back never extends the window.
const RELEASE = `
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 1`

const PEEK = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return {0, 0} end
return {count, ttl}`

/**
 * A Lua script as an ioredis command (defineCommand, the same mechanism as the bucket script):
 * ioredis sends EVALSHA, and EVAL itself when a server lacks the script (NOSCRIPT).
 */
class Script {
  constructor (readonly name: string, readonly source: string) {}

  define (client: Client): void {
    client.defineCommand(this.name, { lua: this.source })
  }

  run (client: Client, keys: string[], args: Array<string | number>): Promise<unknown> {
    const command = (client as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>)[this.name]
    return command.call(client, keys.length, ...keys, ...args)
  }
}

const scripts = {
  create: new Script('gwKeyCreate', CREATE),
  revoke: new Script('gwKeyRevoke', REVOKE),
  delete: new Script('gwKeyDelete', DELETE),
  touch: new Script('gwKeyTouch', TOUCH),
  reserve: new Script('gwFailReserve', RESERVE),
  release: new Script('gwFailRelease', RELEASE),
  peek: new Script('gwFailPeek', PEEK)
}

/** Defines every key and failure-counter script on a client (idempotent). */
function defineScripts (client: Client): void {
  for (const script of Object.values(scripts)) script.define(client)
}

export interface RedisKeyStoreOptions {
  /** Commands (pool of the gateway's request path). */
  client: Client
  /** A separate connection that only subscribes (a subscribed connection can run nothing else). */
  subscriber: Client
  keyPrefix: string
}

export class RedisKeyStore implements KeyStore {
  /** Resolves once the invalidation channel is subscribed (first time); never rejects. */
  readonly subscribed: Promise<void>
  readonly #client: Client
  readonly #listeners: Array<(hash: string) => void> = []
  readonly #p: string
  readonly #channel: string

  constructor (opts: RedisKeyStoreOptions) {
    this.#client = opts.client
    defineScripts(opts.client)
    this.#p = `${opts.keyPrefix}{keys}:`
    this.#channel = `${opts.keyPrefix}invalidate`
    opts.subscriber.on('message', (channel: string, hash: string) => {
      if (channel === this.#channel) this.#notify(hash)
    })
    // The subscriber keeps an offline queue and resubscribes after every reconnect (ioredis
    // autoResubscribe), so this waits for Redis rather than failing while it is down.
    this.subscribed = subscribeChannel(opts.subscriber, this.#channel)
    // Revocations published while the subscriber was disconnected are lost with it: after a
    // reconnect every listener is told to forget everything ('*').
    let lost = false
    opts.subscriber.on('close', () => { lost = true })
    opts.subscriber.on('ready', () => {
      if (lost) {
        lost = false
        this.#notify('*')
      }
    })
  }

  async create (key: StoredApiKey): Promise<void> {
    const fields: string[] = ['id', key.id, 'name', key.name, 'active', key.active ? '1' : '0', 'created_at', key.created_at]
    if (key.rate_limit !== null) fields.push('rate_limit', String(key.rate_limit))
    if (key.burst !== null) fields.push('burst', String(key.burst))
    if (key.services !== null) fields.push('services', JSON.stringify(key.services))
    if (key.expires_at !== null) fields.push('expires_at', key.expires_at)
    if (key.last_used_at !== null) fields.push('last_used_at', key.last_used_at)
    if (key.quota !== null) fields.push('quota', JSON.stringify(key.quota))
    const score = Date.parse(key.created_at)
    const created = await scripts.create.run(this.#client, [this.#h(key.hash), this.#id(key.id), this.#all()],
      [key.hash, Number.isFinite(score) ? score : Date.now(), ...fields])
    if (created !== 1) throw new Error('an API key with this id or hash already exists')
  }

  async findByHash (hash: string): Promise<StoredApiKey | null> {
    const fields = await this.#client.hgetall(this.#h(hash))
    return fields.id === undefined ? null : { ...toRecord(fields), hash }
  }

  async get (id: string): Promise<ApiKeyRecord | null> {
    const hash = await this.#client.get(this.#id(id))
    if (hash === null) return null
    const fields = await this.#client.hgetall(this.#h(hash))
    return fields.id === undefined ? null : toRecord(fields)
  }

  async list (): Promise<ApiKeyRecord[]> {
    const hashes = await this.#client.zrange(this.#all(), '0', '-1')
    if (hashes.length === 0) return []
    // All keys share the {keys} slot, so one pipeline goes to one node even in Cluster.
    const pipeline = this.#client.pipeline()
    for (const hash of hashes) pipeline.hgetall(this.#h(hash))
    const replies = (await pipeline.exec()) ?? []
    const records: ApiKeyRecord[] = []
    for (const [err, fields] of replies) {
      if (err !== null) throw err
      if ((fields as Record<string, string>).id !== undefined) records.push(toRecord(fields as Record<string, string>))
    }
    return records.sort((a, b) => a.created_at === b.created_at ? cmp(a.id, b.id) : cmp(a.created_at, b.created_at))
  }

  async revoke (id: string): Promise<boolean> {
    return this.#change(scripts.revoke, id, false)
  }

  async delete (id: string): Promise<boolean> {
    return this.#change(scripts.delete, id, true)
  }

  async touch (id: string, at: string): Promise<void> {
    const hash = await this.#client.get(this.#id(id))
    if (hash === null) return
    await scripts.touch.run(this.#client, [this.#h(hash), this.#id(id)], [hash, at])
  }

  onInvalidate (listener: (hash: string) => void): void {
    this.#listeners.push(listener)
  }

  /**
   * A bounded read in the API keys' own hash slot ({keys}): what /ready needs to know is whether
   * key records can be read, and in a Cluster any node answers PING while that slot's master is down.
   * `via`: a connection to the node serving that slot, to ask it directly.
   */
  async probe (via: Client = this.#client): Promise<boolean> {
    return typeof await via.exists(this.#all()) === 'number'
  }

  async #change (script: Script, id: string, withIndex: boolean): Promise<boolean> {
    const hash = await this.#client.get(this.#id(id))
    if (hash === null) return false
    const keys = [this.#h(hash), this.#id(id)]
    if (withIndex) keys.push(this.#all())
    if (await script.run(this.#client, keys, [hash, this.#channel]) !== 1) return false
    // Our own subscriber hears the PUBLISH too; telling local listeners now does not depend on it.
    this.#notify(hash)
    return true
  }

  #notify (hash: string): void {
    for (const listener of this.#listeners) {
      try { listener(hash) } catch {}
    }
  }

  #h (hash: string): string { return `${this.#p}h:${hash}` }
  #id (id: string): string { return `${this.#p}id:${id}` }
  #all (): string { return `${this.#p}all` }
}

function cmp (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function toRecord (f: Record<string, string>): ApiKeyRecord {
  return {
    id: f.id,
    name: f.name,
    rate_limit: f.rate_limit === undefined ? null : Number(f.rate_limit),
    burst: f.burst === undefined ? null : Number(f.burst),
    services: f.services === undefined ? null : JSON.parse(f.services),
    active: f.active === '1',
    created_at: f.created_at,
    expires_at: f.expires_at ?? null,
    last_used_at: f.last_used_at ?? null,
    quota: f.quota === undefined ? null : JSON.parse(f.quota)
  }
}

export class RedisFailureCounter implements FailureCounter {
  readonly #client: Client
  readonly #p: string

  constructor (client: Client, opts: { keyPrefix: string }) {
    this.#client = client
    defineScripts(client)
    this.#p = `${opts.keyPrefix}fail:`
  }

  async reserve (id: string, max: number, windowMs: number): Promise<Reservation> {
    const [allowed, count, ttl] = await scripts.reserve.run(this.#client, [this.#p + id], [Math.max(1, Math.ceil(windowMs)), max]) as [number, number, number]
    return { allowed: allowed === 1, count, resetMs: ttl }
  }

  async release (id: string): Promise<void> {
    await scripts.release.run(this.#client, [this.#p + id], [])
  }

  async peek (id: string): Promise<{ count: number, resetMs: number }> {
    const [count, ttl] = await scripts.peek.run(this.#client, [this.#p + id], []) as [number, number]
    return { count, resetMs: ttl }
  }
}
