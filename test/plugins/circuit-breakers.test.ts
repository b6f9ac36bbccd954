// The breaker registry (docs/proxying.md#retries-and-circuit-breakers): the seed's consecutive-count state machine on top of opossum.
import { createHook } from 'node:async_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import t, { type Test } from 'tap'
import circuitBreakers, { type BreakerPermit, type ServiceBreaker } from '../../plugins/circuit-breakers.js'
import { loadConfig } from '../../lib/config.js'
import configPlugin from '../../plugins/config.js'

type Call = [string, ...string[]]

const BASE = {
  ADMIN_AUTH_ENABLED: 'false',
  LOG_LEVEL: 'silent',
  CB_MAX_FAILURES: '3',
  CB_RESET_TIMEOUT_SECONDS: '0.2',
  CB_HALF_OPEN_MAX_REQUESTS: '2',
  CB_SUCCESS_THRESHOLD: '2'
}

async function buildBreakers (t: Test, env: Record<string, string> = {}) {
  const config = loadConfig({ ...BASE, ...env }, { dotenv: false })
  const logs: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  await app.register(configPlugin, { config })
  const calls: Call[] = []
  await app.register(fp(async (f) => {
    f.decorate('gatewayMetrics', {
      breakerState: (service: string, state: string) => { calls.push(['state', service, state]) },
      breakerTrip: (service: string) => { calls.push(['trip', service]) }
    } as never)
  }, { name: 'gateway-metrics' }))
  await app.register(circuitBreakers)
  await app.ready()
  t.teardown(() => app.close())
  const breaker = app.breakers.get('user-service') as ServiceBreaker
  const transitions = () => logs.filter((l) => l.event === 'breaker_transition').map((l) => `${String(l.service)}:${String(l.from)}->${String(l.to)}`)
  return { app, breaker, calls, logs, transitions }
}

function fail (b: ServiceBreaker, n: number): void {
  for (let i = 0; i < n; i++) (b.acquire() as BreakerPermit).failure()
}
function succeed (b: ServiceBreaker, n: number): void {
  for (let i = 0; i < n; i++) (b.acquire() as BreakerPermit).success()
}

async function waitForState (b: ServiceBreaker, state: string, timeoutMs = 10_000): Promise<number> {
  const started = Date.now()
  while (b.state !== state) {
    if (Date.now() - started > timeoutMs) throw new Error(`breaker stayed ${b.state}, wanted ${state}`)
    await sleep(10)
  }
  return Date.now() - started
}

async function openThenHalfOpen (b: ServiceBreaker): Promise<void> {
  fail(b, 3)
  await waitForState(b, 'half-open')
}

t.test('creates one closed breaker per configured service and reports it to metrics once', async (t) => {
  const { app, calls } = await buildBreakers(t)
  t.same(app.breakers.list(), [
    { name: 'auth-service', state: 'closed', failures: 0, consecutive_successes: 0 },
    { name: 'user-service', state: 'closed', failures: 0, consecutive_successes: 0 }
  ])
  t.same(calls, [['state', 'auth-service', 'closed'], ['state', 'user-service', 'closed']])
  t.equal(app.breakers.get('nope'), undefined)
})

t.test('trips after exactly CB_MAX_FAILURES consecutive failures, not one fewer', async (t) => {
  const { app, breaker } = await buildBreakers(t)
  fail(breaker, 2)
  t.equal(breaker.state, 'closed')
  t.ok(breaker.acquire(), 'still admits after N-1 failures')
  const before = Date.now()
  fail(breaker, 1)
  t.equal(breaker.state, 'open')
  const snap = app.breakers.list()[1]
  t.equal(snap.failures, 3)
  t.equal(snap.consecutive_successes, 0)
  t.ok(snap.last_failure !== undefined && Date.parse(snap.last_failure) >= before - 1000, 'last_failure is an ISO date')
  t.match(snap.last_failure, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/)
  t.equal(app.breakers.get('auth-service')?.state, 'closed', 'other services are unaffected')
})

t.test('a success resets the consecutive failure count', async (t) => {
  const { app, breaker } = await buildBreakers(t)
  fail(breaker, 2)
  succeed(breaker, 1)
  t.same(app.breakers.list()[1], { name: 'user-service', state: 'closed', failures: 0, consecutive_successes: 1, last_failure: app.breakers.list()[1].last_failure })
  fail(breaker, 2)
  t.equal(breaker.state, 'closed', '2 + 2 failures with a success between do not trip at 3')
  fail(breaker, 1)
  t.equal(breaker.state, 'open')
})

t.test('an open breaker fails fast and gives a Retry-After in whole seconds', async (t) => {
  const { breaker } = await buildBreakers(t, { CB_RESET_TIMEOUT_SECONDS: '30' })
  fail(breaker, 3)
  for (let i = 0; i < 100; i++) t.equal(breaker.acquire(), null)
  const s = breaker.retryAfterSeconds()
  t.ok(Number.isInteger(s) && s >= 1 && s <= 30, `retry after ${s}s`)
  t.ok(s >= 29, 'close to the full reset timeout right after opening')
})

t.test('goes half-open only after CB_RESET_TIMEOUT_SECONDS', async (t) => {
  const { breaker, transitions } = await buildBreakers(t)
  fail(breaker, 3)
  const elapsed = await waitForState(breaker, 'half-open')
  t.ok(elapsed >= 190, `half-open after ${elapsed} ms (>= 200 ms)`)
  t.equal(breaker.retryAfterSeconds(), 1)
  t.same(transitions(), ['user-service:closed->open', 'user-service:open->half-open'], 'each transition logged once')
})

t.test('half-open admits at most CB_HALF_OPEN_MAX_REQUESTS concurrent trials', async (t) => {
  const { breaker } = await buildBreakers(t, { CB_HALF_OPEN_MAX_REQUESTS: '3', CB_SUCCESS_THRESHOLD: '5' })
  await openThenHalfOpen(breaker)
  const trials = [breaker.acquire(), breaker.acquire(), breaker.acquire()]
  t.ok(trials.every((p) => p !== null), 'three trial permits')
  t.equal(breaker.acquire(), null, 'the fourth concurrent attempt fails fast')
  trials[0]?.success()
  t.ok(breaker.acquire(), 'a settled trial frees its slot')
  t.equal(breaker.acquire(), null)
})

t.test('a released trial frees its slot without counting as a success or a failure', async (t) => {
  const { app, breaker } = await buildBreakers(t)
  await openThenHalfOpen(breaker)
  const a = breaker.acquire() as BreakerPermit
  const b = breaker.acquire() as BreakerPermit
  t.equal(breaker.acquire(), null)
  a.release()
  t.equal(breaker.state, 'half-open')
  t.equal(app.breakers.list()[1].consecutive_successes, 0)
  const c = breaker.acquire()
  t.ok(c, 'the released slot is available again')
  a.failure() // already settled by release(): no-op
  t.equal(breaker.state, 'half-open', 'later calls on a settled permit are ignored')
  b.success()
  c?.success()
  t.equal(breaker.state, 'closed')
})

t.test('closes after CB_SUCCESS_THRESHOLD consecutive successes, not one fewer', async (t) => {
  const { app, breaker, calls, transitions } = await buildBreakers(t, { CB_SUCCESS_THRESHOLD: '3', CB_HALF_OPEN_MAX_REQUESTS: '1' })
  await openThenHalfOpen(breaker)
  succeed(breaker, 2)
  t.equal(breaker.state, 'half-open')
  succeed(breaker, 1)
  t.equal(breaker.state, 'closed')
  t.same(app.breakers.list()[1], { name: 'user-service', state: 'closed', failures: 0, consecutive_successes: 3, last_failure: app.breakers.list()[1].last_failure })
  t.same(calls.filter((c) => c[1] === 'user-service'), [
    ['state', 'user-service', 'closed'],
    ['state', 'user-service', 'open'],
    ['trip', 'user-service'],
    ['state', 'user-service', 'half-open'],
    ['state', 'user-service', 'closed']
  ])
  t.same(transitions(), ['user-service:closed->open', 'user-service:open->half-open', 'user-service:half-open->closed'])
  fail(breaker, 2)
  t.equal(breaker.state, 'closed', 'the failure count starts again from zero once closed')
})

t.test('any failure in half-open reopens it and restarts the reset timer', async (t) => {
  const { breaker, calls } = await buildBreakers(t, { CB_SUCCESS_THRESHOLD: '3' })
  await openThenHalfOpen(breaker)
  succeed(breaker, 2)
  const reopenedAt = Date.now()
  fail(breaker, 1)
  t.equal(breaker.state, 'open')
  t.equal(breaker.acquire(), null)
  await waitForState(breaker, 'half-open')
  t.ok(Date.now() - reopenedAt >= 190, 'a full reset timeout after reopening')
  t.equal(calls.filter((c) => c[0] === 'trip').length, 2, 'both closed->open and half-open->open count as trips')
})

t.test('outcomes of attempts started under an earlier state do not move the current one', async (t) => {
  const { breaker } = await buildBreakers(t, { CB_HALF_OPEN_MAX_REQUESTS: '2', CB_SUCCESS_THRESHOLD: '2' })
  const slow = [breaker.acquire(), breaker.acquire(), breaker.acquire()] as BreakerPermit[]
  fail(breaker, 3)
  t.equal(breaker.state, 'open')
  await waitForState(breaker, 'half-open')
  slow[0].failure()
  t.equal(breaker.state, 'half-open', 'a late failure from the closed period does not reopen')
  slow[1].success()
  slow[2].success()
  t.equal(breaker.state, 'half-open', 'late successes from the closed period do not close it')
  const trial = breaker.acquire() as BreakerPermit
  const other = breaker.acquire() as BreakerPermit
  other.failure() // reopens: the first trial belongs to the old half-open period now
  t.equal(breaker.state, 'open')
  await waitForState(breaker, 'half-open')
  trial.failure()
  t.equal(breaker.state, 'half-open', 'a trial from the previous half-open period is ignored')
  t.ok(breaker.acquire() && breaker.acquire(), 'and it held no slot in the new period')
})

t.test('reset(name) closes one breaker and ignores attempts started before it', async (t) => {
  const { app, breaker, transitions } = await buildBreakers(t, { CB_RESET_TIMEOUT_SECONDS: '30' })
  const auth = app.breakers.get('auth-service') as ServiceBreaker
  fail(auth, 3)
  const early = breaker.acquire() as BreakerPermit
  fail(breaker, 3)
  t.equal(app.breakers.reset('user-service'), true)
  t.equal(breaker.state, 'closed')
  t.equal(auth.state, 'open', 'only the named breaker')
  t.match(app.breakers.list()[1], { state: 'closed', failures: 0, consecutive_successes: 0 })
  const pending = breaker.acquire() as BreakerPermit
  fail(breaker, 2)
  early.failure()
  t.equal(breaker.state, 'closed', 'a permit from before the reset does not count')
  pending.failure()
  t.equal(breaker.state, 'open')
  t.equal(app.breakers.reset('no-such-service'), false)
  t.ok(transitions().includes('user-service:open->closed'))
})

t.test('resetAll() closes every breaker', async (t) => {
  const { app, calls } = await buildBreakers(t, { CB_RESET_TIMEOUT_SECONDS: '30' })
  for (const s of app.breakers.list()) fail(app.breakers.get(s.name) as ServiceBreaker, 3)
  t.same(app.breakers.list().map((s) => s.state), ['open', 'open'])
  app.breakers.resetAll()
  t.same(app.breakers.list().map((s) => [s.state, s.failures]), [['closed', 0], ['closed', 0]])
  t.same(calls.slice(-2), [['state', 'auth-service', 'closed'], ['state', 'user-service', 'closed']])
  app.breakers.resetAll()
  t.equal(calls.length, 8, 'resetting a closed breaker is not a transition')
})

t.test('closing the app stops the reset timers', async (t) => {
  const live = new Set<number>()
  const hook = createHook({
    init (id, type) { if (type === 'Timeout') live.add(id) },
    destroy (id) { live.delete(id) }
  })
  hook.enable()
  t.teardown(() => hook.disable())
  const { app, breaker, calls } = await buildBreakers(t)
  fail(breaker, 3)
  t.ok(live.size > 0, 'a reset timer is pending')
  await app.close()
  const count = calls.length
  await sleep(400)
  await new Promise((resolve) => setImmediate(resolve)) // lets the sleep timer's destroy hook run
  t.equal(calls.length, count, 'no half-open transition after close')
  t.equal(live.size, 0, 'no timer left behind')
  const permit = breaker.acquire()
  t.ok(permit, 'after close, attempts pass untracked')
  permit?.failure()
})
