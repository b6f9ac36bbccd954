// Concurrency caps (docs/configuration.md#load-shedding): how many proxied requests may be in flight at once, per service
// (`maxConcurrent`) and for the whole gateway (MAX_CONCURRENT_REQUESTS). A request over a cap waits
// in a bounded FIFO queue for at most the service's `queueTimeoutMs`, then is shed. This is what keeps
// one slow backend from holding every socket of the gateway (docs/reliability.md, FT-03).
//
// A freed slot is handed straight to the oldest waiter, so a burst of new arrivals cannot overtake
// the queue. Plain callbacks, no promises: with no cap configured the proxy never gets here.
import { noop } from './noop.js'

/** Why a request was not given a slot. */
export type Refusal = 'full' | 'timeout'

interface Waiter {
  readonly granted: () => void
  readonly refused: (why: Refusal) => void
  timer: NodeJS.Timeout | null
  done: boolean
}

export class ConcurrencyLimit {
  #max: number
  /** Most requests that may wait for a slot; more are refused at once. */
  queueLimit: number
  #active = 0
  readonly #queue: Waiter[] = []

  constructor (max: number, queueLimit = max) {
    this.#max = max
    this.queueLimit = queueLimit
  }

  get max (): number { return this.#max }
  get active (): number { return this.#active }
  get waiting (): number { return this.#queue.length }

  /** Takes a slot if one is free now. */
  tryAcquire (): boolean {
    if (this.#active >= this.#max) return false
    this.#active++
    return true
  }

  /**
   * Waits up to `timeoutMs` for a slot. Exactly one of `granted` / `refused` is called, later (never
   * from inside this call). Returns a function that withdraws the wait (the client left); it does
   * nothing once the wait has ended.
   */
  wait (timeoutMs: number, granted: () => void, refused: (why: Refusal) => void): () => void {
    const waiter: Waiter = { granted, refused, timer: null, done: false }
    if (this.#queue.length >= this.queueLimit || timeoutMs <= 0) {
      waiter.done = true
      process.nextTick(refused, this.#queue.length >= this.queueLimit ? 'full' : 'timeout')
      return noop
    }
    this.#queue.push(waiter)
    waiter.timer = setTimeout(() => {
      waiter.timer = null
      this.#leave(waiter)
      refused('timeout')
    }, timeoutMs)
    return () => { this.#leave(waiter) }
  }

  /**
   * A new cap on the same count (a service's `maxConcurrent` changed): requests holding slots keep
   * them. A higher cap hands the new slots to waiters at once; under a lower one, slots given back
   * go to the pool until the count is under the new cap.
   */
  resize (max: number, queueLimit = max): void {
    this.#max = max
    this.queueLimit = queueLimit
    while (this.#active < this.#max && this.#queue.length > 0) {
      this.#active++
      const next = this.#queue.shift() as Waiter
      next.done = true
      if (next.timer !== null) clearTimeout(next.timer)
      // Not from inside resize(): the caller is swapping a service table.
      process.nextTick(next.granted)
    }
  }

  /** Gives a slot back: to the oldest waiter if there is one, else to the pool. */
  release (): void {
    const next = this.#active > this.#max ? undefined : this.#queue.shift()
    if (next === undefined) {
      this.#active--
      return
    }
    // The slot changes hands: `active` stays the same.
    next.done = true
    if (next.timer !== null) clearTimeout(next.timer)
    next.granted()
  }

  #leave (waiter: Waiter): void {
    if (waiter.done) return
    waiter.done = true
    if (waiter.timer !== null) clearTimeout(waiter.timer)
    const i = this.#queue.indexOf(waiter)
    if (i !== -1) this.#queue.splice(i, 1)
  }
}

/**
 * Takes a slot of every limit in `limits` (service first, then global), waiting for them in turn
 * within one deadline. `onSlots` gets the release function that gives back everything taken; on
 * refusal whatever was taken is given back before `onRefused`. Returns a function that withdraws a
 * pending wait (giving back slots already held); it does nothing after `onSlots` or `onRefused`.
 */
export function acquireAll (
  limits: readonly ConcurrencyLimit[],
  timeoutMs: number,
  onSlots: (release: () => void) => void,
  onRefused: (why: Refusal) => void
): () => void {
  const deadline = Date.now() + timeoutMs
  let held = 0
  let settled = false
  let withdraw: () => void = noop
  const giveBack = (): void => {
    for (let i = 0; i < held; i++) limits[i].release()
    held = 0
  }
  const next = (): void => {
    while (held < limits.length && limits[held].tryAcquire()) held++
    if (held === limits.length) {
      settled = true
      let released = false
      onSlots(() => {
        if (released) return
        released = true
        giveBack()
      })
      return
    }
    withdraw = limits[held].wait(deadline - Date.now(), () => {
      held++
      next()
    }, (why) => {
      if (settled) return // withdrawn before a deferred refusal arrived
      settled = true
      giveBack()
      onRefused(why)
    })
  }
  next()
  return () => {
    if (settled) return
    settled = true
    withdraw()
    giveBack()
  }
}
