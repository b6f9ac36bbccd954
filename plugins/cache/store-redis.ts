// The Redis response cache store (docs/caching.md#stores): entries shared by every instance, each
// URL one hash (one field per variant) that expires with its longest-lived variant. It also
// coordinates the fleet: a lock per URL so one instance fetches a missing entry while the others
// wait for it, and a channel that tells every instance about fills and purges.
//
// It uses the store plugin's connections (plugins/store/index.ts `RedisStore.connections`): no
// offline queue, a command timeout, so with Redis down every call fails at once and the cache
// steps aside (docs/caching.md#when-redis-is-down).
import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { allLive, purgeMatches, type CacheEntry, type CacheStore, type FleetCoordination } from './types.js'
import { subscribeChannel } from '../store/redis-subscription.js'

type Client = Redis | Cluster

/** HSET the variant, and make the key live at least as long as it. */
const PUT_LUA = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`

/** Deletes the lock only if it is still ours (it may have expired and been taken by another). */
const UNLOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/** How often a waiter looks for the entry when no message tells it (a message may be missed). */
const POLL_MS = 50

/**
 * How long this instance may answer from its own copy of what Redis held, without asking again:
 * a hit then costs no round trip. Any instance storing, invalidating or purging a URL drops every
 * instance's copy through the channel at once; this bounds a copy whose message was missed.
 */
const NEAR_TTL_MS = 1000

/** This instance's copy of one URL's variants, as Redis answered them (none, too). */
interface Near { readonly entries: CacheEntry[], readonly bytes: number, readonly until: number }
const SCAN_COUNT = 500

interface Scripted {
  gwCachePut (key: string, field: string, value: Buffer, ttlMs: number): Promise<number>
  gwCacheUnlock (key: string, token: string): Promise<number>
}

/** Glob metacharacters of SCAN MATCH, escaped. */
function globEscape (s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}

export function encodeEntry (entry: CacheEntry): Buffer {
  const meta = Buffer.from(JSON.stringify({ p: entry.policy, s: entry.status, h: entry.headers, v: entry.variant, x: entry.expiresAt, e: entry.staleIfErrorUntil }))
  const head = Buffer.allocUnsafe(4)
  head.writeUInt32BE(meta.length)
  return Buffer.concat([head, meta, entry.body])
}

export function decodeEntry (buf: Buffer): CacheEntry | null {
  if (buf.length < 4) return null
  const n = buf.readUInt32BE(0)
  if (buf.length < 4 + n) return null
  try {
    const m = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as { p: CacheEntry['policy'], s: number, h: CacheEntry['headers'], v: string, x: number, e?: number }
    // `e` is missing from entries stored by a version without revalidation: their window was `x`.
    return { policy: m.p, status: m.s, headers: m.h, variant: m.v, expiresAt: m.x, staleIfErrorUntil: m.e ?? m.x, body: buf.subarray(4 + n) }
  } catch {
    return null
  }
}

export interface RedisCacheStoreOptions {
  client: Client
  subscriber: Redis
  keyPrefix: string
  /** Bound of the near copies (CACHE_MAX_BYTES); 0 turns them off. */
  nearMaxBytes?: number
}

export class RedisCacheStore implements CacheStore, FleetCoordination {
  readonly kind = 'redis'
  /** Resolves once the purge channel is subscribed (first time); never rejects. */
  readonly subscribed: Promise<void>
  readonly #client: Client & Scripted
  readonly #subscriber: Redis
  readonly #p: string
  readonly #lockP: string
  readonly #channel: string
  readonly #id = randomBytes(8).toString('hex')
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #purgeListeners: Array<(service: string | null, prefix: string | null) => void> = []
  readonly #onMessage: (channel: string, message: string) => void
  readonly #near = new Map<string, Near>()
  readonly #nearMaxBytes: number
  #nearBytes = 0
  /** Bumped by every drop: a read that raced one does not leave a copy of what it read behind. */
  #generation = 0

  constructor (opts: RedisCacheStoreOptions) {
    const client = opts.client
    client.defineCommand('gwCachePut', { numberOfKeys: 1, lua: PUT_LUA })
    client.defineCommand('gwCacheUnlock', { numberOfKeys: 1, lua: UNLOCK_LUA })
    this.#client = client as Client & Scripted
    this.#subscriber = opts.subscriber
    this.#p = `${opts.keyPrefix}cache:`
    this.#lockP = `${opts.keyPrefix}cache-lock:`
    this.#channel = `${opts.keyPrefix}cache`
    this.#nearMaxBytes = opts.nearMaxBytes ?? 0
    this.#onMessage = (channel, message) => { if (channel === this.#channel) this.#heard(message) }
    opts.subscriber.on('message', this.#onMessage)
    // Queued by the subscriber until Redis answers; ioredis resubscribes after every reconnect.
    this.subscribed = subscribeChannel(opts.subscriber, this.#channel)
  }

  /** Whether a command could run now: with Redis down the cache steps aside without trying. */
  get available (): boolean {
    return this.#client.status === 'ready'
  }

  async get (key: string): Promise<CacheEntry[]> {
    return this.peek(key) ?? await this.look(key)
  }

  peek (key: string): CacheEntry[] | undefined {
    // Checked first: with Redis down the cache steps aside, near copies included (get then rejects).
    if (!this.available) return undefined
    const now = Date.now()
    const near = this.#near.get(key)
    if (near !== undefined) {
      if (near.until > now && allLive(near.entries, now)) return near.entries
      this.#drop(key)
    }
    return undefined
  }

  async look (key: string): Promise<CacheEntry[]> {
    if (!this.available) throw new Error('redis unavailable')
    const generation = this.#generation
    const fields = await this.#client.hgetallBuffer(this.#p + key)
    const now = Date.now()
    const out: CacheEntry[] = []
    for (const name in fields) {
      const entry = decodeEntry(fields[name])
      if (entry !== null && entry.expiresAt > now) out.push(entry)
    }
    // Nothing found is kept too: a URL that is never stored (no-store, private…) costs one round
    // trip a second, not one a request; another instance's fill drops it like any copy.
    if (generation === this.#generation) this.#keep(key, out, now)
    return out
  }

  async put (key: string, entry: CacheEntry): Promise<void> {
    const ttl = entry.expiresAt - Date.now()
    if (ttl <= 0) return
    this.#drop(key)
    await this.#client.gwCachePut(this.#p + key, `v:${entry.variant}`, encodeEntry(entry), ttl)
    this.#client.publish(this.#channel, `filled ${this.#id} ${key}`).catch(() => {})
  }

  async delete (key: string): Promise<void> {
    this.#drop(key)
    // Sent together: every instance drops its copy as soon as Redis has dropped the entry.
    await Promise.all([this.#client.del(this.#p + key), this.#client.publish(this.#channel, `filled ${this.#id} ${key}`)])
  }

  /** Keeps a copy of what Redis answered for `key`, within the byte bound (oldest copies go first). */
  #keep (key: string, entries: CacheEntry[], now: number): void {
    let bytes = 64 + key.length * 2
    for (const e of entries) bytes += e.body.length + 256
    if (bytes > this.#nearMaxBytes) return
    this.#drop(key)
    this.#near.set(key, { entries, bytes, until: now + NEAR_TTL_MS })
    this.#nearBytes += bytes
    for (const [oldest, copy] of this.#near) {
      if (this.#nearBytes <= this.#nearMaxBytes) break
      this.#near.delete(oldest)
      this.#nearBytes -= copy.bytes
    }
  }

  #drop (key: string): void {
    this.#generation++
    const copy = this.#near.get(key)
    if (copy === undefined) return
    this.#near.delete(key)
    this.#nearBytes -= copy.bytes
  }

  #dropMatching (service: string | null, prefix: string | null): void {
    this.#generation++
    for (const key of [...this.#near.keys()]) if (purgeMatches(key, service, prefix)) this.#drop(key)
  }

  async purge (service: string | null, prefix: string | null): Promise<number> {
    this.#dropMatching(service, prefix)
    const pattern = globEscape(this.#p) + (service === null ? '*' : `${globEscape(service)}:${prefix === null ? '' : globEscape(prefix.replace(/\/$/, ''))}*`)
    const nodes = this.#client.isCluster
      ? (this.#client as Cluster).nodes('master')
      : [this.#client as Redis]
    let n = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
        cursor = next
        const mine = keys.filter((k) => purgeMatches(k.slice(this.#p.length), service, prefix))
        if (mine.length === 0) continue
        // In a Cluster the keys of one batch live in different slots: one command each, sent together.
        if (this.#client.isCluster) await Promise.all(mine.map(async (k) => await this.#client.unlink(k)))
        else await this.#client.unlink(...mine)
        n += mine.length
      } while (cursor !== '0')
    }
    await this.#client.publish(this.#channel, `purge ${JSON.stringify([service, prefix])}`)
    return n
  }

  /** The near copies' bytes: what this process holds; the entries themselves are Redis's memory. */
  bytes (): number { return this.#nearBytes }

  async close (): Promise<void> {
    this.#subscriber.off('message', this.#onMessage)
    for (const set of this.#waiters.values()) for (const wake of set) wake()
    this.#waiters.clear()
    this.#near.clear()
    this.#nearBytes = 0
  }

  // The fleet: one fetch per missing URL across instances (docs/caching.md#request-coalescing).

  async lock (key: string, ttlMs: number): Promise<string | null> {
    const token = `${this.#id}:${randomBytes(4).toString('hex')}`
    const ok = await this.#client.set(this.#lockP + key, token, 'PX', Math.max(1, ttlMs), 'NX')
    return ok === 'OK' ? token : null
  }

  async unlock (key: string, token: string): Promise<void> {
    await this.#client.gwCacheUnlock(this.#lockP + key, token)
    // Waiters of a fetch that stored nothing stop waiting at once.
    await this.#client.publish(this.#channel, `filled ${this.#id} ${key}`)
  }

  /**
   * Resolves when another instance reports `key` filled (or gave up on it), or after POLL_MS,
   * whichever is first: the caller then looks the entry up again, until its own deadline.
   */
  async changed (key: string): Promise<void> {
    await new Promise<void>((resolve) => {
      let set = this.#waiters.get(key)
      if (set === undefined) this.#waiters.set(key, set = new Set())
      const wake = (): void => {
        clearTimeout(timer)
        const s = this.#waiters.get(key)
        s?.delete(wake)
        if (s?.size === 0) this.#waiters.delete(key)
        resolve()
      }
      const timer = setTimeout(wake, POLL_MS)
      set.add(wake)
    })
  }

  /** Whether `key`'s lock is still held (by anyone). */
  async locked (key: string): Promise<boolean> {
    return await this.#client.exists(this.#lockP + key) === 1
  }

  onPurge (listener: (service: string | null, prefix: string | null) => void): void {
    this.#purgeListeners.push(listener)
  }

  #heard (message: string): void {
    const space = message.indexOf(' ')
    const kind = message.slice(0, space)
    const rest = message.slice(space + 1)
    if (kind === 'filled') {
      // `filled <instance> <key>`: this instance's own changes dropped its copy already.
      const space2 = rest.indexOf(' ')
      const key = rest.slice(space2 + 1)
      if (rest.slice(0, space2) !== this.#id) this.#drop(key)
      const set = this.#waiters.get(key)
      if (set !== undefined) for (const wake of [...set]) wake()
    } else if (kind === 'purge') {
      try {
        const [service, prefix] = JSON.parse(rest) as [string | null, string | null]
        this.#dropMatching(service, prefix)
        for (const l of this.#purgeListeners) l(service, prefix)
      } catch {}
    }
  }
}
