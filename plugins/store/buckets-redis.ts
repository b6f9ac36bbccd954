// Rate-limit buckets in Redis (docs/architecture.md#the-store, docs/proxying.md#rate-limits): one Lua script does refill, check and take atomically
// on the Redis server's clock, so any number of gateway instances, whatever their clocks say, admit
// exactly what one bucket allows. ioredis sends the script body once per connection (EVAL) and
// EVALSHA from then on, and re-sends it itself after a NOSCRIPT (a Redis restart or SCRIPT FLUSH;
// NOSCRIPT means the script did not run, so nothing is taken twice).
//
// Takes are batched per bucket (docs/performance.md: at most 0.5 commands per request at saturation on one
// key). One hot key is the worst case for Redis: every command queues behind the others on one
// single-threaded server, and each one costs the gateway a write, a parse and a promise. So takes
// for one bucket (same id, burst and rpm) that arrive together share one script call asking for n
// tokens. Batching only the takes of one tick would do little for a gateway, whose requests arrive
// one socket read at a time; what makes batches form is that takes arriving while a call for their
// bucket is in flight wait for its answer and then go out together as the next call. An idle
// bucket's take goes out on the next tick, so only a busy bucket ever waits, and not for long:
// after maxWaitMs (1 ms) the waiting takes are sent anyway, pipelined behind the call that has not
// answered. Without that bound a stalled Redis or a starved event loop cost a queued take two
// stalls instead of one, and pushed takes past the rate limiter's timeout into its fallback.
//
// Why this is still exact: n single takes at one server instant are n refill-then-take steps with
// no time between them, so only the first refills, and they grant min(n, whole tokens) in order.
// The script does exactly that in one atomic step and returns the refilled units; the client then
// replays the n steps with lib/token-bucket.ts's arithmetic, giving each waiter what its own
// single take would have reported. Atomicity and the server clock are those of one take, so N
// instances batching on one Redis still admit exactly what one bucket allows; calls pipelined on
// one connection run in the order sent, each exact on its own. The stored hash is unchanged, so
// instances still running the one-token script share buckets with these during a rolling deploy.
import { Cluster, type Redis } from 'ioredis'
import { keySlot } from './cluster-slot.js'
import { remaining, resetMs, retryAfterMs, UNITS_PER_TOKEN, type BucketState } from '../../lib/token-bucket.js'
import type { BucketResult, BucketStore } from './types.js'

// Mirrors lib/token-bucket.ts in integer units (one token = 60,000 units, so refill is `rpm` units
// per millisecond). Stored as a hash {u: units, t: ms of the last take}. Takes up to ARGV[3]
// tokens; returns {granted, units before the takes}. Nothing granted writes nothing: the stored
// state already implies the refilled one. PEXPIRE is the time to refill fully, when a missing key
// (a full bucket) means the same thing, so idle clients cost no memory.
// redis.replicate_commands(): Redis 3.2–4 need it before writing after TIME; 5+ always replicate
// effects and keep it as a no-op.
const TAKE_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local unit = 60000
local cap = tonumber(ARGV[1]) * unit
local rpm = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
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
local granted = math.min(n, math.floor(units / unit))
if granted > 0 then
  local left = units - granted * unit
  redis.call('HSET', KEYS[1], 'u', left, 't', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((cap - left) / rpm))
end
return { granted, units }
`

const COMMAND = 'gwRateLimitTake'
/**
 * Waiters per script call. The script's cost does not grow with n; the cap bounds how many
 * requests one failed or timed-out call fails together, and what waits behind one call.
 */
export const MAX_BATCH = 64

type TakeReply = [granted: number, units: number]
type TakeCommand = (key: string, burst: number, rpm: number, n: number) => Promise<TakeReply>

interface Waiter {
  resolve (result: BucketResult): void
  reject (err: unknown): void
}

/** The takes of one bucket: those not yet sent, and how many calls are out. */
interface Lane {
  readonly name: string
  readonly key: string
  readonly burst: number
  readonly rpm: number
  waiting: Waiter[]
  inFlight: number
  scheduled: boolean
  /** Sends what waits behind a call in flight that has not answered within maxWaitMs. */
  timer: NodeJS.Timeout | null
}

export interface RedisBucketsOptions {
  /** Prefix of every key (REDIS_KEY_PREFIX). The client itself must not add another one. */
  keyPrefix: string
  /**
   * How long takes wait for the call in flight on their bucket before they go out anyway, as a
   * second call pipelined behind it (default 1 ms).
   */
  maxWaitMs?: number
}

export class RedisBuckets implements BucketStore {
  readonly #take: TakeCommand
  readonly #prefix: string
  readonly #lanes = new Map<string, Lane>()
  readonly #maxWaitMs: number
  readonly #cluster: Cluster | null

  /** The client is the caller's: this class defines its script on it and never closes it. */
  constructor (client: Redis | Cluster, opts: RedisBucketsOptions) {
    client.defineCommand(COMMAND, { numberOfKeys: 1, lua: TAKE_LUA })
    const command = (client as unknown as Record<string, TakeCommand>)[COMMAND]
    this.#take = command.bind(client)
    this.#prefix = opts.keyPrefix
    this.#maxWaitMs = opts.maxWaitMs ?? 1
    this.#cluster = client instanceof Cluster ? client : null
  }

  /** `<prefix>{rl:<id>}`: the hash tag puts each bucket in one Cluster slot. */
  key (id: string): string {
    return `${this.#prefix}{rl:${id}}`
  }

  /**
   * Cluster: the node the client's slot map names for the bucket's slot (after a failover, the
   * promoted replica), '' while the map is empty. Standalone: '' (one server, one domain).
   */
  domainOf (id: string): string {
    if (this.#cluster === null) return ''
    return this.#cluster.slots[keySlot(this.key(id))]?.[0] ?? ''
  }

  take (id: string, burst: number, rpm: number): Promise<BucketResult> {
    return new Promise((resolve, reject) => {
      const name = `${burst}:${rpm}:${id}`
      let lane = this.#lanes.get(name)
      if (lane === undefined) {
        lane = { name, key: this.key(id), burst, rpm, waiting: [], inFlight: 0, scheduled: false, timer: null }
        this.#lanes.set(name, lane)
      }
      lane.waiting.push({ resolve, reject })
      if (lane.waiting.length >= MAX_BATCH) this.#send(lane)
      else if (lane.inFlight === 0) this.#schedule(lane)
      else if (lane.timer === null) lane.timer = setTimeout(this.#overdue, this.#maxWaitMs, lane)
    })
  }

  async close (): Promise<void> {
    // Nothing of its own to close: the store owns the client, and takes still queued go out on it
    // (or fail with it) like any command.
  }

  // process.nextTick runs once the microtask queue is empty, so the batch holds every take made
  // in this tick, including those of callers woken by the previous call's answer.
  #schedule (lane: Lane): void {
    if (lane.scheduled) return
    lane.scheduled = true
    process.nextTick(() => {
      lane.scheduled = false
      if (lane.waiting.length > 0) this.#send(lane)
      else this.#release(lane)
    })
  }

  readonly #overdue = (lane: Lane): void => {
    lane.timer = null
    if (lane.waiting.length > 0) this.#send(lane)
  }

  #send (lane: Lane): void {
    if (lane.timer !== null) {
      clearTimeout(lane.timer)
      lane.timer = null
    }
    const batch = lane.waiting
    lane.waiting = []
    lane.inFlight++
    this.#take(lane.key, lane.burst, lane.rpm, batch.length).then(
      ([granted, units]) => {
        lane.inFlight--
        grant(batch, granted, units, lane.burst, lane.rpm)
        this.#next(lane)
      },
      (err: unknown) => {
        lane.inFlight--
        for (const w of batch) w.reject(err)
        this.#next(lane)
      })
  }

  #next (lane: Lane): void {
    if (lane.inFlight > 0) return
    if (lane.waiting.length > 0) this.#schedule(lane)
    else this.#release(lane)
  }

  /** Forgets an idle lane, so a bucket costs nothing here between takes. */
  #release (lane: Lane): void {
    if (lane.inFlight === 0 && lane.waiting.length === 0 && !lane.scheduled && this.#lanes.get(lane.name) === lane) {
      this.#lanes.delete(lane.name)
    }
  }
}

/** Replays the batch as single takes at one instant: the first `granted` waiters get a token each. */
function grant (batch: Waiter[], granted: number, units: number, burst: number, rpm: number): void {
  const state: BucketState = { units, at: 0 }
  for (let i = 0; i < batch.length; i++) {
    const allowed = i < granted
    if (allowed) state.units -= UNITS_PER_TOKEN
    batch[i].resolve({
      allowed,
      limit: burst,
      remaining: remaining(state),
      resetMs: resetMs(state, burst, rpm),
      retryAfterMs: allowed ? 0 : retryAfterMs(state, rpm)
    })
  }
}
