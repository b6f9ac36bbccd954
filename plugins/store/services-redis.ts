// Service definitions in Redis (docs/admin-api.md#managing-services). Layout, under KEY_PREFIX and hash-tagged `{services}`
// so every script touches one Cluster slot:
//   <p>{services}:defs      hash: name -> JSON {"version","updated_at","seeded","definition"}
//   <p>{services}:version   integer: the table version, bumped by every write (0/absent: never written)
// Writes are Lua scripts that check the version the caller decided on, write, bump and PUBLISH the
// new version on <p>services; every instance hears it on its subscriber connection. A message
// missed while that connection was down is made up for on reconnect (listeners get -1 and read
// the version again).
import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import type { ServiceSnapshot, ServiceStore, StoredService } from './types.js'
import { subscribeChannel } from './redis-subscription.js'

type Client = Redis | Cluster

// ARGV: name, definition JSON, updated_at, expected version, channel, seeded (true/false)
const PUT = `
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if v ~= tonumber(ARGV[4]) then return -1 end
v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], '{"version":' .. v .. ',"updated_at":"' .. ARGV[3] .. '","seeded":' .. ARGV[6] .. ',"definition":' .. ARGV[2] .. '}')
redis.call('PUBLISH', ARGV[5], v)
return v`

// ARGV: name, expected version, channel
const DELETE = `
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if v ~= tonumber(ARGV[2]) then return -1 end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], v)
return v`

// ARGV: updated_at, channel, then name, definition JSON pairs
const SEED = `
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= 0 then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], '{"version":1,"updated_at":"' .. ARGV[1] .. '","seeded":true,"definition":' .. ARGV[i + 1] .. '}')
end
redis.call('SET', KEYS[2], 1)
redis.call('PUBLISH', ARGV[2], 1)
return 1`

const SNAPSHOT = 'return {redis.call(\'GET\', KEYS[2]) or \'0\', redis.call(\'HGETALL\', KEYS[1])}'

class Script {
  readonly #sha: string
  constructor (readonly source: string) {
    this.#sha = createHash('sha1').update(source).digest('hex')
  }

  async run (client: Client, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.#sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
      return await client.eval(this.source, keys.length, ...keys, ...args)
    }
  }
}

const scripts = { put: new Script(PUT), delete: new Script(DELETE), seed: new Script(SEED), snapshot: new Script(SNAPSHOT) }

export class RedisServiceStore implements ServiceStore {
  readonly #client: Client
  readonly #keys: [string, string]
  readonly #channel: string
  readonly #listeners: Array<(version: number) => void> = []
  /** Resolves once the change channel is subscribed (first time); never rejects. */
  readonly subscribed: Promise<void>

  constructor (opts: { client: Client, subscriber: Client, keyPrefix: string }) {
    this.#client = opts.client
    this.#keys = [`${opts.keyPrefix}{services}:defs`, `${opts.keyPrefix}{services}:version`]
    this.#channel = `${opts.keyPrefix}services`
    opts.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.#channel) this.#notify(Number(message))
    })
    // Queued by the subscriber until Redis answers; resubscribed by ioredis after a reconnect.
    this.subscribed = subscribeChannel(opts.subscriber, this.#channel)
    let lost = false
    opts.subscriber.on('close', () => { lost = true })
    opts.subscriber.on('ready', () => {
      if (lost) {
        lost = false
        this.#notify(-1)
      }
    })
  }

  async snapshot (): Promise<ServiceSnapshot> {
    const [version, flat] = await scripts.snapshot.run(this.#client, this.#keys, []) as [string, string[]]
    const services: StoredService[] = []
    for (let i = 0; i < flat.length; i += 2) {
      const entry = JSON.parse(flat[i + 1]) as Omit<StoredService, 'name'>
      const stored: StoredService = { name: flat[i], definition: entry.definition, version: entry.version, updated_at: entry.updated_at }
      if (entry.seeded !== undefined) stored.seeded = entry.seeded
      services.push(stored)
    }
    services.sort((a, b) => a.version - b.version || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    return { version: Number(version), services }
  }

  async version (): Promise<number> {
    return Number(await this.#client.get(this.#keys[1]) ?? 0)
  }

  async put (name: string, definition: Record<string, unknown>, at: string, expected: number, seeded = false): Promise<number | null> {
    const v = Number(await scripts.put.run(this.#client, this.#keys, [name, JSON.stringify(definition), at, expected, this.#channel, String(seeded)]))
    return v < 0 ? null : v
  }

  async delete (name: string, expected: number): Promise<number | null> {
    const v = Number(await scripts.delete.run(this.#client, this.#keys, [name, expected, this.#channel]))
    return v < 0 ? null : v
  }

  async seed (services: Array<{ name: string, definition: Record<string, unknown> }>, at: string): Promise<boolean> {
    const args = services.flatMap((s) => [s.name, JSON.stringify(s.definition)])
    return Number(await scripts.seed.run(this.#client, this.#keys, [at, this.#channel, ...args])) === 1
  }

  onChange (listener: (version: number) => void): void {
    this.#listeners.push(listener)
  }

  #notify (version: number): void {
    for (const listener of this.#listeners) {
      try { listener(version) } catch {}
    }
  }
}
