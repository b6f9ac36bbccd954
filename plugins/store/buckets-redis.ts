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
// one connection run in the order sent, each exact on its own.
//
// A busy bucket goes further: plugins/store/bucket-leases.ts takes tokens out of it ahead of need,
// and its takes are answered in this process (takeLocal) without a call at all. A take the shared
// bucket refused still gets a token this process holds, so a process never refuses while holding
// one. Each batch of takes has one deadline timer (takeWithin), not one per take. Without leases
// the stored hash is what it always was ({u, t}); an instance of a version without leases ignores
// the reservations, hence RATE_LIMIT_LEASES=false during such an upgrade (docs/configuration.md).
import { Cluster, type Redis } from 'ioredis'
import { performance } from 'node:perf_hooks'
import { keySlot } from './cluster-slot.js'
import { BucketLeases, type LeaseCommand, type LeaseOptions } from './bucket-leases.js'
import { LEASE_LUA, TAKE_LUA } from './bucket-scripts.js'
import { remaining, resetMs, retryAfterMs, UNITS_PER_TOKEN, type BucketState } from '../../lib/token-bucket.js'
import type { BucketAnswer, BucketResult, BucketStore } from './types.js'

const COMMAND = 'gwRateLimitTake'
const LEASE_COMMAND = 'gwRateLimitLease'
/**
 * Waiters per script call. The script's cost does not grow with n; the cap bounds how many
 * requests one failed or timed-out call fails together, and what waits behind one call.
 */
export const MAX_BATCH = 64

type TakeReply = [granted: number, units: number]
type TakeCommand = (key: string, burst: number, rpm: number, n: number) => Promise<TakeReply>

/** The takes of one script call, and its one deadline timer. */
interface Batch {
  readonly lane: Lane
  readonly waiters: BucketAnswer[]
  /** Each waiter's deadline (monotonic ms; Infinity: none), in the order of `waiters`. */
  readonly deadlines: number[]
  /** Set for the earliest deadline still pending; re-armed only when a take actually times out. */
  timer: NodeJS.Timeout | null
  /** Answered or failed: whatever comes later is dropped. */
  settled: boolean
}

/** Stands in for a waiter already answered by its timeout. */
const answered: BucketAnswer = () => {}

/** The takes of one bucket: those not yet sent, and how many calls are out. */
interface Lane {
  readonly name: string
  readonly id: string
  readonly key: string
  readonly burst: number
  readonly rpm: number
  waiting: BucketAnswer[]
  /** The waiting takes' deadlines (monotonic ms; Infinity: none). */
  deadlines: number[]
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
  /** Leases of busy buckets (docs/performance.md#the-redis-bucket-lease); false turns them off. */
  leases?: LeaseOptions | false
}

export class RedisBuckets implements BucketStore {
  readonly #take: TakeCommand
  readonly #prefix: string
  readonly #lanes = new Map<string, Lane>()
  readonly #maxWaitMs: number
  readonly #cluster: Cluster | null
  readonly #leases: BucketLeases | null

  /** The client is the caller's: this class defines its scripts on it and never closes it. */
  constructor (client: Redis | Cluster, opts: RedisBucketsOptions) {
    client.defineCommand(COMMAND, { numberOfKeys: 1, lua: TAKE_LUA })
    client.defineCommand(LEASE_COMMAND, { numberOfKeys: 1, lua: LEASE_LUA })
    const commands = client as unknown as Record<string, TakeCommand & LeaseCommand>
    this.#take = commands[COMMAND].bind(client)
    this.#prefix = opts.keyPrefix
    this.#maxWaitMs = opts.maxWaitMs ?? 1
    this.#cluster = client instanceof Cluster ? client : null
    this.#leases = opts.leases === false ? null : new BucketLeases(commands[LEASE_COMMAND].bind(client), opts.leases)
  }

  /** `<prefix>{rl:<id>}`: the hash tag puts each bucket in one Cluster slot. */
  key (id: string): string {
    return `${this.#prefix}{rl:${id}}`
  }

  /** The leases of this instance (tests look at them). */
  get leases (): BucketLeases | null {
    return this.#leases
  }

  /**
   * Cluster: the node the client's slot map names for the bucket's slot (after a failover, the
   * promoted replica), '' while the map is empty. Standalone: '' (one server, one domain).
   */
  domainOf (id: string): string {
    if (this.#cluster === null) return ''
    return this.#cluster.slots[keySlot(this.key(id))]?.[0] ?? ''
  }

  /** A take answered from this instance's lease on the bucket, or undefined (then take exactly). */
  takeLocal (id: string, burst: number, rpm: number): BucketResult | undefined {
    const leases = this.#leases
    if (leases === null || leases.size === 0) return undefined
    return leases.take(id, burst, rpm)
  }

  take (id: string, burst: number, rpm: number): Promise<BucketResult> {
    const local = this.takeLocal(id, burst, rpm)
    if (local !== undefined) return Promise.resolve(local)
    return new Promise((resolve, reject) => {
      this.#enqueue(id, burst, rpm, Infinity, (result, err) => { if (result !== undefined) resolve(result); else reject(err) })
    })
  }

  /**
   * An exact take that answers within timeoutMs: `answer` gets the result, or no result and the
   * error (none when the time ran out). All takes of one call share one timer, set from the
   * first of them.
   */
  takeWithin (id: string, burst: number, rpm: number, timeoutMs: number, answer: BucketAnswer): void {
    this.#enqueue(id, burst, rpm, timeoutMs, answer)
  }

  async close (): Promise<void> {
    // The store owns the client, and takes still queued go out on it (or fail with it) like any
    // command; leases give their unused tokens back before the client closes.
    await this.#leases?.close()
  }

  #enqueue (id: string, burst: number, rpm: number, timeoutMs: number, answer: BucketAnswer): void {
    const name = `${burst}:${rpm}:${id}`
    let lane = this.#lanes.get(name)
    if (lane === undefined) {
      lane = { name, id, key: this.key(id), burst, rpm, waiting: [], deadlines: [], inFlight: 0, scheduled: false, timer: null }
      this.#lanes.set(name, lane)
    }
    lane.waiting.push(answer)
    lane.deadlines.push(timeoutMs === Infinity ? Infinity : performance.now() + timeoutMs)
    if (lane.waiting.length >= MAX_BATCH) this.#send(lane)
    else if (lane.inFlight === 0) this.#schedule(lane)
    else if (lane.timer === null) lane.timer = setTimeout(this.#overdue, this.#maxWaitMs, lane)
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
    const batch: Batch = { lane, waiters: lane.waiting, deadlines: lane.deadlines, timer: null, settled: false }
    lane.waiting = []
    lane.deadlines = []
    // A lease that arrived since these takes queued serves them without a call.
    const leases = this.#leases
    if (leases !== null && leases.size > 0) {
      let served = 0
      while (served < batch.waiters.length && leases.spend(lane.id, lane.burst, lane.rpm)) served++
      if (served > 0) {
        const result = leases.result(lane.id) as BucketResult
        batch.deadlines.splice(0, served)
        for (const answer of batch.waiters.splice(0, served)) answer(result)
        if (batch.waiters.length === 0) {
          this.#next(lane)
          return
        }
      }
    }
    this.#arm(batch)
    lane.inFlight++
    this.#take(lane.key, lane.burst, lane.rpm, batch.waiters.length).then(
      ([granted, units]) => {
        lane.inFlight--
        if (this.#settle(batch)) {
          const busy = batch.waiters.length > 1 || lane.waiting.length > 0
          this.#grant(batch.waiters, lane, granted, units)
          if (busy && leases !== null) leases.consider(lane.id, lane.key, lane.burst, lane.rpm, units - granted * UNITS_PER_TOKEN)
        }
        this.#next(lane)
      },
      (err: unknown) => {
        lane.inFlight--
        if (this.#settle(batch)) for (const answer of batch.waiters) answer(undefined, err)
        this.#next(lane)
      })
  }

  /** Marks the batch answered and clears its timer; false when it already was. */
  #settle (batch: Batch): boolean {
    if (batch.settled) return false
    batch.settled = true
    if (batch.timer !== null) clearTimeout(batch.timer)
    batch.timer = null
    return true
  }

  /** Sets the batch's one timer for its earliest pending deadline, if it has one. */
  #arm (batch: Batch): void {
    let earliest = Infinity
    for (let i = 0; i < batch.deadlines.length; i++) {
      if (batch.waiters[i] !== answered && batch.deadlines[i] < earliest) earliest = batch.deadlines[i]
    }
    if (earliest !== Infinity) batch.timer = setTimeout(this.#expire, Math.max(0, earliest - performance.now()), batch)
  }

  // Expired after the poll phase: when the event loop was stalled, an answer that arrived in time
  // is waiting in the socket, and it must win over the timer that fired in the same turn. Only the
  // takes whose own deadline passed give up; the others keep waiting for the call.
  readonly #expire = (batch: Batch): void => {
    batch.timer = null
    setImmediate(() => {
      if (batch.settled) return
      const now = performance.now()
      for (let i = 0; i < batch.waiters.length; i++) {
        const answer = batch.waiters[i]
        if (answer === answered || batch.deadlines[i] > now) continue
        batch.waiters[i] = answered
        answer(undefined)
      }
      this.#arm(batch)
    })
  }

  /**
   * Replays the batch as single takes at one instant: the first `granted` waiters get a token
   * each. A waiter the shared bucket refused still gets a token this instance holds in a lease.
   */
  #grant (waiters: BucketAnswer[], lane: Lane, granted: number, units: number): void {
    const { burst, rpm } = lane
    const state: BucketState = { units, at: 0 }
    for (let i = 0; i < waiters.length; i++) {
      const allowed = i < granted
      if (allowed) state.units -= UNITS_PER_TOKEN
      if (waiters[i] === answered) continue // timed out: it was served by the caller's fallback
      if (!allowed && this.#leases !== null && this.#leases.spend(lane.id, burst, rpm)) {
        waiters[i](this.#leases.result(lane.id))
        continue
      }
      waiters[i]({
        allowed,
        limit: burst,
        remaining: remaining(state),
        resetMs: resetMs(state, burst, rpm),
        retryAfterMs: allowed ? 0 : retryAfterMs(state, rpm)
      })
    }
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
