// Rate-limit buckets in Redis (SPEC §6, §7): one Lua script does refill, check and take atomically
// on the Redis server's clock, so any number of gateway instances, whatever their clocks say, admit
// exactly what one bucket allows. One round trip per take: ioredis sends the script body once per
// connection (EVAL) and EVALSHA from then on, and re-sends it itself after a NOSCRIPT (a Redis
// restart or SCRIPT FLUSH; NOSCRIPT means the script did not run, so nothing is taken twice).
import type { Cluster, Redis } from 'ioredis'
import type { BucketResult, BucketStore } from './types.js'

// Mirrors src/token-bucket.ts in integer units (one token = 60,000 units, so refill is `rpm` units
// per millisecond). Stored as a hash {u: units, t: ms of the last take}. A denied take writes
// nothing: the stored state already implies the refilled one. PEXPIRE is the time to refill fully,
// when a missing key (a full bucket) means the same thing, so idle clients cost no memory.
// redis.replicate_commands(): Redis 3.2–4 need it before writing after TIME; 5+ always replicate
// effects and keep it as a no-op.
const TAKE_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local unit = 60000
local cap = tonumber(ARGV[1]) * unit
local rpm = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local units = cap
local saved = redis.call('HMGET', KEYS[1], 'u', 't')
if saved[1] then
  units = tonumber(saved[1])
  local at = tonumber(saved[2])
  if now > at then units = units + (now - at) * rpm end
  if units > cap then units = cap end
end
local allowed = 0
local retry = 0
if units >= unit then
  allowed = 1
  units = units - unit
else
  retry = math.ceil((unit - units) / rpm)
end
local reset = math.ceil((cap - units) / rpm)
if allowed == 1 then
  redis.call('HSET', KEYS[1], 'u', units, 't', now)
  redis.call('PEXPIRE', KEYS[1], reset)
end
return { allowed, math.floor(units / unit), reset, retry }
`

const COMMAND = 'gwRateLimitTake'

type TakeReply = [allowed: number, remaining: number, resetMs: number, retryAfterMs: number]
type TakeCommand = (key: string, burst: number, rpm: number) => Promise<TakeReply>

export interface RedisBucketsOptions {
  /** Prefix of every key (REDIS_KEY_PREFIX). The client itself must not add another one. */
  keyPrefix: string
}

export class RedisBuckets implements BucketStore {
  readonly #take: TakeCommand
  readonly #prefix: string

  /** The client is the caller's: this class defines its script on it and never closes it. */
  constructor (client: Redis | Cluster, opts: RedisBucketsOptions) {
    client.defineCommand(COMMAND, { numberOfKeys: 1, lua: TAKE_LUA })
    const command = (client as unknown as Record<string, TakeCommand>)[COMMAND]
    this.#take = command.bind(client)
    this.#prefix = opts.keyPrefix
  }

  /** `<prefix>{rl:<id>}`: the hash tag puts each bucket in one Cluster slot. */
  key (id: string): string {
    return `${this.#prefix}{rl:${id}}`
  }

  async take (id: string, burst: number, rpm: number): Promise<BucketResult> {
    const [allowed, remaining, resetMs, retryAfterMs] = await this.#take(this.key(id), burst, rpm)
    return { allowed: allowed === 1, limit: burst, remaining, resetMs, retryAfterMs }
  }

  async close (): Promise<void> {
    // Nothing of its own to close: the store owns the client.
  }
}
