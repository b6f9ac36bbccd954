// One circuit breaker per service (docs/proxying.md#retries-and-circuit-breakers), with the seed's semantics, on top of opossum.
//
// opossum owns the state (closed / open / half-open), the reset timer that moves open → half-open,
// and the transition events. We never call `fire()`: a proxied attempt is a streamed exchange
// (plugins/proxy/exchange.ts), not a promise-returning function, and "the client went away" is an
// outcome fire() cannot express. Instead the proxy takes a permit per attempt and settles it, and the policy below
// drives opossum with `open()` / `close()`. What we add on top, and why:
//  - consecutive-failure counting: opossum trips on an error percentage over a rolling window; the
//    seed trips after CB_MAX_FAILURES failures in a row, and any success resets the count. So
//    opossum's own tripping is disabled (it only trips inside fire(), which we never call, and the
//    thresholds are set so it could not trip anyway) and `failure()` calls `open()` itself.
//  - a half-open slot count: opossum admits one trial in half-open; the seed admits up to
//    CB_HALF_OPEN_MAX_REQUESTS concurrent trials, and a permit that ends without an outcome must
//    give its slot back (docs/proxying.md#retries-and-circuit-breakers), so slots are counted here.
//  - a success count in half-open: opossum closes on the first success; the seed needs
//    CB_SUCCESS_THRESHOLD successes in a row, so `close()` is called when the count is reached.
//  - a generation number: an attempt started under an earlier state (e.g. a slow request sent while
//    closed that fails after the breaker already reopened, or one from before an admin reset) must
//    not move the current state, so each permit remembers the generation it was issued in.
//  - the time the breaker opened: opossum records its timer start only once, at construction, and
//    503 answers need an accurate Retry-After.
import fp from 'fastify-plugin'
import CircuitBreaker from 'opossum'

export type BreakerState = 'closed' | 'open' | 'half-open'

/** The outcome of one upstream attempt. The first call settles it; later calls are no-ops. */
export interface BreakerPermit { success (): void, failure (): void, release (): void }

export interface ServiceBreaker {
  readonly name: string
  readonly state: BreakerState
  /** A permit for one attempt, or null to fail fast (open, or half-open with every trial slot taken). */
  acquire (): BreakerPermit | null
  /** Whole seconds (>= 1) until a trial could be admitted: the value for a 503's Retry-After. */
  retryAfterSeconds (): number
}

export interface BreakerSnapshot { name: string, state: BreakerState, failures: number, consecutive_successes: number, last_failure?: string }

export interface BreakerRegistry {
  get (name: string): ServiceBreaker | undefined
  list (): BreakerSnapshot[]
  /** false when no service has that name. */
  reset (name: string): boolean
  resetAll (): void
  /** A fresh, closed breaker for `name`, replacing (and stopping) any it had: a new or re-pointed service. */
  create (name: string): ServiceBreaker
  /** Stops and forgets `name`'s breaker (its service was removed). */
  remove (name: string): void
}

export interface BreakerPolicy {
  maxFailures: number
  resetTimeoutMs: number
  halfOpenMaxRequests: number
  successThreshold: number
}

type Transition = (name: string, from: BreakerState, to: BreakerState) => void

const NOOP_PERMIT: BreakerPermit = Object.freeze({ success () {}, failure () {}, release () {} })
type Outcome = 'success' | 'failure' | 'release'

class Breaker implements ServiceBreaker {
  readonly name: string
  readonly #policy: BreakerPolicy
  readonly #cb: CircuitBreaker
  readonly #onTransition: Transition
  #announced: BreakerState = 'closed'
  #generation = 0
  #failures = 0
  #successes = 0
  #lastFailure: number | null = null
  #trials = 0
  #openedAt = 0
  #stopped = false

  constructor (name: string, policy: BreakerPolicy, onTransition: Transition) {
    this.name = name
    this.#policy = policy
    this.#onTransition = onTransition
    this.#cb = new CircuitBreaker(async () => {}, {
      name,
      resetTimeout: policy.resetTimeoutMs,
      timeout: false,
      // Never trip by percentage, even if something called fire(): the policy here decides.
      errorThresholdPercentage: 100,
      volumeThreshold: Number.MAX_SAFE_INTEGER,
      rollingPercentilesEnabled: false,
      enableSnapshots: false
    })
    this.#cb.on('open', () => this.#enter('open'))
    this.#cb.on('halfOpen', () => this.#enter('half-open'))
    this.#cb.on('close', () => this.#enter('closed'))
  }

  get state (): BreakerState {
    if (this.#cb.opened) return 'open'
    if (this.#cb.halfOpen) return 'half-open'
    if (this.#cb.closed) return 'closed'
    return this.#announced // after shutdown: the last state seen
  }

  acquire (): BreakerPermit | null {
    // After shutdown opossum's state is gone; let the last in-flight requests through untracked.
    if (this.#stopped) return NOOP_PERMIT
    if (this.#cb.opened) return null
    if (this.#cb.halfOpen) {
      if (this.#trials >= this.#policy.halfOpenMaxRequests) return null
      this.#trials++
      return this.#permit(true)
    }
    return this.#permit(false)
  }

  retryAfterSeconds (): number {
    if (!this.#cb.opened) return 1
    const left = this.#openedAt + this.#policy.resetTimeoutMs - Date.now()
    return Math.max(1, Math.ceil(left / 1000))
  }

  snapshot (): BreakerSnapshot {
    const s: BreakerSnapshot = { name: this.name, state: this.state, failures: this.#failures, consecutive_successes: this.#successes }
    if (this.#lastFailure !== null) s.last_failure = new Date(this.#lastFailure).toISOString()
    return s
  }

  /** Closed, counts zeroed, and outcomes of attempts started before the reset ignored. */
  reset (): void {
    if (this.#stopped) return
    this.#cb.close() // emits 'close' (and clears the reset timer) unless already closed
    this.#generation++
    this.#trials = 0
    this.#failures = 0
    this.#successes = 0
  }

  stop (): void {
    this.#stopped = true
    this.#cb.shutdown() // clears the reset timer and the stats interval, drops listeners
  }

  #permit (trial: boolean): BreakerPermit {
    const generation = this.#generation
    let settled = false
    const settle = (outcome: Outcome): void => {
      if (settled) return
      settled = true
      if (generation !== this.#generation || this.#stopped) return
      if (trial) this.#trials--
      if (outcome === 'success') this.#success()
      else if (outcome === 'failure') this.#failure()
    }
    return {
      success: () => settle('success'),
      failure: () => settle('failure'),
      release: () => settle('release')
    }
  }

  #success (): void {
    this.#failures = 0
    this.#successes++
    if (this.#cb.halfOpen && this.#successes >= this.#policy.successThreshold) this.#cb.close()
  }

  #failure (): void {
    this.#failures++
    this.#successes = 0
    this.#lastFailure = Date.now()
    // Half-open: any failure reopens, and opossum restarts its reset timer on 'open'.
    if (this.#cb.halfOpen || (this.#cb.closed && this.#failures >= this.#policy.maxFailures)) this.#cb.open()
  }

  #enter (to: BreakerState): void {
    const from = this.#announced
    if (from === to) return
    this.#announced = to
    this.#generation++
    this.#trials = 0
    if (to === 'open') this.#openedAt = Date.now()
    if (to === 'half-open') this.#successes = 0
    this.#onTransition(this.name, from, to)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    breakers: BreakerRegistry
  }
}

export default fp(async function circuitBreakers (fastify) {
  const metrics = fastify.gatewayMetrics
  const onTransition: Transition = (service, from, to) => {
    const msg = `circuit breaker ${service}: ${from} -> ${to}`
    if (to === 'open') fastify.log.warn({ event: 'breaker_transition', service, from, to }, msg)
    else fastify.log.info({ event: 'breaker_transition', service, from, to }, msg)
    metrics.breakerState(service, to)
    if (to === 'open') metrics.breakerTrip(service)
  }

  const breakers = new Map<string, Breaker>()
  const create = (name: string): Breaker => {
    breakers.get(name)?.stop()
    const breaker = new Breaker(name, fastify.config.circuitBreaker, onTransition)
    breakers.set(name, breaker)
    metrics.breakerState(name, 'closed')
    return breaker
  }
  for (const svc of fastify.config.services) create(svc.name)

  const registry: BreakerRegistry = {
    get: (name) => breakers.get(name),
    list: () => Array.from(breakers.values(), (b) => b.snapshot()),
    reset (name) {
      const b = breakers.get(name)
      if (b === undefined) return false
      b.reset()
      return true
    },
    resetAll () {
      for (const b of breakers.values()) b.reset()
    },
    create,
    remove (name) {
      breakers.get(name)?.stop()
      breakers.delete(name)
    }
  }
  fastify.decorate('breakers', registry)

  fastify.addHook('onClose', async () => {
    for (const b of breakers.values()) b.stop()
  })
}, { name: 'circuit-breakers', fastify: '5.x', dependencies: ['config', 'gateway-metrics'] })
