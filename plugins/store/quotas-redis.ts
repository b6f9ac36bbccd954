// Quota counters in Redis (docs/policies.md#quotas): one hash per API key, `<p>{q:<id>}` = {s:
// period start, n: count}, hash-tagged so it sits in one Cluster slot. One Lua script reads the
// Redis server's clock (TIME), picks the period holding it, and counts the request only while the
// count is under the limit, atomically: any number of instances, whatever their clocks say, admit
// exactly `limit` requests per period. The key expires when its period ends.
//
// Calendar periods in a time zone are computed here, not in Lua: the script is handed the period
// holding this instance's now and its two neighbours, and uses whichever holds the server's now.
// A clock further off than that (more than a period) gets the server's time back, and the call is
// made again with periods around it.
import type { Cluster, Redis } from 'ioredis'
import { periodAt, type Period } from '../../lib/quota-period.js'
import type { Quota, QuotaResult, QuotaStore } from './types.js'

// ARGV: limit, take (1/0), then start,end of three candidate periods.
// Returns {allowed, used, start, end}, or {-1, server now in ms} when no candidate holds now.
const QUOTA_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local start, finish
for i = 3, 7, 2 do
  local s, e = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if s <= now and now < e then start, finish = s, e end
end
if not start then return { -1, now } end
local limit = tonumber(ARGV[1])
local saved = redis.call('HMGET', KEYS[1], 's', 'n')
local used = 0
if saved[1] and tonumber(saved[1]) == start then used = tonumber(saved[2]) end
if used >= limit then return { 0, used, start, finish } end
if ARGV[2] == '1' then
  used = used + 1
  redis.call('HSET', KEYS[1], 's', start, 'n', used)
  redis.call('PEXPIREAT', KEYS[1], finish)
  return { 1, used, start, finish }
end
return { 1, used, start, finish }
`

const COMMAND = 'gwQuotaCount'
type QuotaCommand = (key: string, ...args: Array<string | number>) => Promise<number[]>

export class RedisQuotas implements QuotaStore {
  readonly #run: QuotaCommand
  readonly #client: Redis | Cluster
  readonly #prefix: string
  readonly #now: () => number

  /** The client is the caller's: this class defines its script on it and never closes it. */
  constructor (client: Redis | Cluster, opts: { keyPrefix: string, now?: () => number }) {
    client.defineCommand(COMMAND, { numberOfKeys: 1, lua: QUOTA_LUA })
    this.#run = (client as unknown as Record<string, QuotaCommand>)[COMMAND].bind(client)
    this.#client = client
    this.#prefix = opts.keyPrefix
    this.#now = opts.now ?? Date.now
  }

  key (keyId: string): string {
    return `${this.#prefix}{q:${keyId}}`
  }

  consume (keyId: string, quota: Quota): Promise<QuotaResult> {
    return this.#count(keyId, quota, true)
  }

  usage (keyId: string, quota: Quota): Promise<QuotaResult> {
    return this.#count(keyId, quota, false)
  }

  async forget (keyId: string): Promise<void> {
    await this.#client.del(this.key(keyId))
  }

  async #count (keyId: string, quota: Quota, take: boolean): Promise<QuotaResult> {
    let reply = await this.#run(this.key(keyId), quota.limit, take ? 1 : 0, ...candidates(this.#now(), quota))
    // This instance's clock is more than a period away from the server's: ask again around it.
    if (reply[0] === -1) reply = await this.#run(this.key(keyId), quota.limit, take ? 1 : 0, ...candidates(reply[1], quota))
    if (reply[0] === -1) throw new Error('quota period not found around the Redis server time')
    const [allowed, used, start, end] = reply
    return { allowed: allowed === 1, used, limit: quota.limit, start, end }
  }
}

/** The period holding `now` and its two neighbours, as start,end pairs. */
function candidates (now: number, quota: Quota): number[] {
  const current = periodAt(now, quota.period, quota.timezone)
  const previous: Period = periodAt(current.start - 1, quota.period, quota.timezone)
  const next: Period = periodAt(current.end, quota.period, quota.timezone)
  return [previous.start, previous.end, current.start, current.end, next.start, next.end]
}
