// Circuit breakers and retries end to end (docs/proxying.md#retries-and-circuit-breakers; docs/reliability.md, FT-04, FT-06, FT-07): the
// real gateway app in front of real scripted backends; attempts are counted where they land.
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { type Behaviour, echo, failThenOk, resetBeforeHeaders, slow, startBackend, status } from '../../support/backends.js'
import { build, listen } from '../../support/app.js'

const ADMIN = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }

const BASE: Record<string, string> = {
  RATE_LIMIT_RPM: '1000000',
  RATE_LIMIT_BURST: '1000000',
  CB_MAX_FAILURES: '50',
  CB_RESET_TIMEOUT_SECONDS: '30',
  RETRY_MAX_RETRIES: '3',
  RETRY_INITIAL_DELAY_MS: '1',
  RETRY_JITTER_FACTOR: '0'
}

async function backends (t: Test, behaviour: Behaviour) {
  const users = await startBackend(behaviour)
  const auth = await startBackend()
  t.teardown(() => users.close())
  t.teardown(() => auth.close())
  const times: number[] = []
  let current = behaviour
  // Arrival time of every proxied attempt, for back-off lower bounds.
  const timed: Behaviour = (req, res, body, n) => {
    if (req.url?.startsWith('/api/') === true) times.push(performance.now())
    current(req, res, body, n)
  }
  users.behave(timed)
  const behave = (b: Behaviour) => { current = b }
  const hits = () => users.requests.filter((r) => r.url.startsWith('/api/users')).length
  return { users, auth, times, hits, behave }
}

async function setup (t: Test, env: Record<string, string>, behaviour: Behaviour = echo) {
  const b = await backends(t, behaviour)
  const app = await build(t, { ...BASE, USER_SERVICE_URL: b.users.url, AUTH_SERVICE_URL: b.auth.url, ...env })
  return { app, ...b }
}

const get = (app: FastifyInstance, url = '/api/users/1') => app.inject({ method: 'GET', url })
const breakerState = (app: FastifyInstance, name = 'user-service') => app.breakers.get(name)?.state

async function waitFor (fn: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const started = Date.now()
  while (!fn()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

t.test('circuit breaker', async (t) => {
  t.test('opens after exactly CB_MAX_FAILURES failures, then fails fast without reaching the backend', async (t) => {
    const { app, hits } = await setup(t, { CB_MAX_FAILURES: '3', RETRY_MAX_RETRIES: '0' }, status(500))
    for (let i = 1; i <= 2; i++) t.equal((await get(app)).statusCode, 500, `failure ${i} is passed through`)
    t.equal(breakerState(app), 'closed', 'still closed after N-1 failures')
    t.equal((await get(app)).statusCode, 500)
    t.equal(breakerState(app), 'open')
    for (let i = 0; i < 10; i++) {
      const res = await get(app)
      t.equal(res.statusCode, 503)
      t.match(res.json(), { status: 'error', error: 'Service Unavailable', message: /circuit/i })
      const retryAfter = Number(res.headers['retry-after'])
      t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 30, `Retry-After ${String(res.headers['retry-after'])}`)
    }
    t.equal(hits(), 3, 'the backend saw only the three failing attempts')
  })

  t.test('an open breaker leaves other services alone', async (t) => {
    const { app, auth } = await setup(t, { CB_MAX_FAILURES: '2', RETRY_MAX_RETRIES: '0' }, status(502))
    await get(app)
    await get(app)
    t.equal((await get(app)).statusCode, 503)
    const res = await get(app, '/api/auth/login')
    t.equal(res.statusCode, 200)
    t.equal(breakerState(app, 'auth-service'), 'closed')
    t.ok(auth.requests.some((r) => r.url === '/api/auth/login'))
  })

  t.test('a 4xx from the backend is not a failure', async (t) => {
    const { app } = await setup(t, { CB_MAX_FAILURES: '2', RETRY_MAX_RETRIES: '0' }, status(404))
    for (let i = 0; i < 5; i++) t.equal((await get(app)).statusCode, 404)
    t.equal(breakerState(app), 'closed')
  })

  t.test('a timed-out attempt is a failure and answers 504', async (t) => {
    const { app, hits } = await setup(t, { CB_MAX_FAILURES: '2', UPSTREAM_TIMEOUT_MS: '100' }, slow(2000))
    const res = await get(app)
    t.equal(res.statusCode, 504)
    t.match(res.json(), { status: 'error', error: 'Gateway Timeout' })
    t.equal(app.breakers.list()[1].failures, 1)
    await get(app)
    t.equal(breakerState(app), 'open')
    t.equal(hits(), 2, 'timeouts are not retried')
  })

  t.test('half-open admits at most CB_HALF_OPEN_MAX_REQUESTS trials and closes after CB_SUCCESS_THRESHOLD successes', async (t) => {
    const s = await setup(t, {
      // A reset timeout a busy machine cannot overrun between opening and the fail-fast check.
      CB_MAX_FAILURES: '2', CB_RESET_TIMEOUT_SECONDS: '1', CB_HALF_OPEN_MAX_REQUESTS: '2', CB_SUCCESS_THRESHOLD: '2', RETRY_MAX_RETRIES: '0'
    }, status(500))
    await get(s.app)
    const beforeOpening = Date.now()
    await get(s.app)
    t.equal(breakerState(s.app), 'open')
    t.equal((await get(s.app)).statusCode, 503)
    await waitFor(() => breakerState(s.app) === 'half-open', 'half-open')
    t.ok(Date.now() - beforeOpening >= 990, 'not before the reset timeout')
    s.behave(slow(300))
    const trials = [get(s.app), get(s.app)]
    await waitFor(() => s.hits() === 4, 'two trials at the backend')
    const extra = await get(s.app)
    t.equal(extra.statusCode, 503, 'a third concurrent request fails fast')
    t.equal(Number(extra.headers['retry-after']), 1)
    const results = await Promise.all(trials)
    t.same(results.map((r) => r.statusCode), [200, 200])
    t.equal(breakerState(s.app), 'closed')
    t.equal(s.hits(), 4, 'only the two trials reached the backend while half-open')
    t.equal((await get(s.app)).statusCode, 200)
  })

  t.test('a failure in half-open reopens the breaker', async (t) => {
    const { app, hits } = await setup(t, { CB_MAX_FAILURES: '1', CB_RESET_TIMEOUT_SECONDS: '1', RETRY_MAX_RETRIES: '0' }, status(503))
    await get(app)
    await waitFor(() => breakerState(app) === 'half-open', 'half-open')
    t.equal((await get(app)).statusCode, 503)
    t.equal(breakerState(app), 'open')
    t.equal(hits(), 2)
    const res = await get(app)
    t.equal(res.statusCode, 503)
    t.match(res.json(), { message: /circuit/i })
    t.equal(hits(), 2, 'reopened: fails fast again')
  })

  t.test('a client that goes away during a half-open trial frees its slot', async (t) => {
    const b = await backends(t, status(500))
    const { app, url } = await listen(t, {
      ...BASE,
      USER_SERVICE_URL: b.users.url,
      AUTH_SERVICE_URL: b.auth.url,
      CB_MAX_FAILURES: '1',
      CB_RESET_TIMEOUT_SECONDS: '0.2',
      CB_HALF_OPEN_MAX_REQUESTS: '1',
      RETRY_MAX_RETRIES: '0'
    })
    await get(app)
    await waitFor(() => breakerState(app) === 'half-open', 'half-open')
    b.behave(slow(3000))
    const client = httpRequest(`${url}/api/users/abandoned`)
    client.on('error', () => {})
    client.end()
    await waitFor(() => b.hits() === 2, 'the trial at the backend')
    t.equal((await get(app)).statusCode, 503, 'the only slot is taken')
    client.destroy()
    b.behave(echo)
    let admitted = 503
    for (let i = 0; i < 250 && admitted === 503; i++) {
      admitted = (await get(app)).statusCode
      if (admitted === 503) await sleep(20)
    }
    t.equal(admitted, 200, 'the released slot admits the next trial')
    t.equal(app.breakers.list()[1].consecutive_successes, 1, 'the abandoned trial counted neither way')
    t.equal(breakerState(app), 'half-open')
  })

  t.test('admin lists and resets breakers', async (t) => {
    const { app, hits } = await setup(t, { CB_MAX_FAILURES: '2', RETRY_MAX_RETRIES: '0' }, status(500))
    await get(app)
    await get(app)
    t.equal((await app.inject({ method: 'GET', url: '/admin/circuit-breakers' })).statusCode, 401, 'behind Basic auth')
    const list = await app.inject({ method: 'GET', url: '/admin/circuit-breakers', headers: ADMIN })
    t.equal(list.statusCode, 200)
    const users = list.json().data.find((b: { name: string }) => b.name === 'user-service')
    t.match(users, { name: 'user-service', state: 'open', failures: 2, consecutive_successes: 0, last_failure: /^\d{4}-/ })
    const reset = await app.inject({ method: 'POST', url: '/admin/circuit-breakers/user-service/reset', headers: ADMIN })
    t.same(reset.json(), { status: 'success', message: 'Circuit breaker user-service reset' })
    t.equal(breakerState(app), 'closed')
    t.equal((await get(app)).statusCode, 500, 'requests reach the backend again')
    t.equal(hits(), 3)
    const unknown = await app.inject({ method: 'POST', url: '/admin/circuit-breakers/payments/reset', headers: ADMIN })
    t.equal(unknown.statusCode, 404)
    t.match(unknown.json(), { status: 'error', message: /payments/ })
    const all = await app.inject({ method: 'POST', url: '/admin/circuit-breakers/reset', headers: ADMIN })
    t.same(all.json(), { status: 'success', message: 'All circuit breakers reset' })
  })

  t.test('breaker state and trips are exported as metrics', async (t) => {
    const { app } = await setup(t, { CB_MAX_FAILURES: '1', RETRY_MAX_RETRIES: '0' }, status(500))
    await get(app)
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    t.match(text, /gateway_circuit_breaker_state\{service="user-service"\} 0\b/)
    t.match(text, /gateway_circuit_breaker_state\{service="auth-service"\} 1\b/)
    t.match(text, /gateway_circuit_breaker_trips_total\{service="user-service"\} 1\b/)
  })
})

t.test('retries', async (t) => {
  t.test('a GET is retried on 503 until it succeeds, with X-Retry-Count', async (t) => {
    const { app, hits } = await setup(t, {}, failThenOk(2, 503))
    const res = await get(app)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-retry-count'], '2')
    t.equal(hits(), 3)
    t.equal(app.breakers.list()[1].consecutive_successes, 1, 'every attempt was recorded on the breaker')
  })

  t.test('502 and 504 are retried too, 500 is not', async (t) => {
    for (const code of [502, 504]) {
      const { app, hits } = await setup(t, {}, failThenOk(1, code))
      const res = await get(app)
      t.equal(res.statusCode, 200, `${code} then 200`)
      t.equal(res.headers['x-retry-count'], '1')
      t.equal(hits(), 2)
    }
    const { app, hits } = await setup(t, {}, failThenOk(1, 500))
    const res = await get(app)
    t.equal(res.statusCode, 500)
    t.notOk(res.headers['x-retry-count'])
    t.equal(hits(), 1)
  })

  t.test('a backend that always answers 503 gets 1 + RETRY_MAX_RETRIES attempts, then its 503 is passed through', async (t) => {
    const { app, hits } = await setup(t, { RETRY_MAX_RETRIES: '2' }, status(503, { 'retry-after': '0' }))
    const res = await get(app)
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '0', "the backend's Retry-After reaches the client")
    t.equal(res.headers['x-retry-count'], '2')
    t.equal(hits(), 3)
  })

  t.test('a POST is never retried', async (t) => {
    const { app, hits } = await setup(t, {}, status(503))
    const res = await app.inject({ method: 'POST', url: '/api/users', payload: { a: 1 } })
    t.equal(res.statusCode, 503)
    t.notOk(res.headers['x-retry-count'])
    t.equal(hits(), 1)
  })

  t.test('a PUT body is replayed intact on every retry', async (t) => {
    const { app, users, hits } = await setup(t, {}, failThenOk(2, 502))
    const payload = JSON.stringify({ data: 'x'.repeat(5000), n: 42 })
    const res = await app.inject({ method: 'PUT', url: '/api/users/7', payload, headers: { 'content-type': 'application/json' } })
    t.equal(res.statusCode, 200)
    t.equal(hits(), 3)
    for (const r of users.requests.filter((x) => x.url === '/api/users/7')) {
      t.equal(r.method, 'PUT')
      t.equal(r.body.toString(), payload)
      t.equal(r.headers['content-length'], String(Buffer.byteLength(payload)))
      t.equal(r.headers['content-type'], 'application/json')
    }
  })

  t.test('back-off gaps grow from RETRY_INITIAL_DELAY_MS (lower bounds)', async (t) => {
    const { app, times } = await setup(t, { RETRY_INITIAL_DELAY_MS: '40', RETRY_MULTIPLIER: '2' }, failThenOk(3, 503))
    const res = await get(app)
    t.equal(res.statusCode, 200)
    t.equal(times.length, 4)
    const gaps = times.slice(1).map((x, i) => x - times[i])
    t.ok(gaps[0] >= 38, `gap 1 ${gaps[0].toFixed(1)} ms >= 40`)
    t.ok(gaps[1] >= 78, `gap 2 ${gaps[1].toFixed(1)} ms >= 80`)
    t.ok(gaps[2] >= 158, `gap 3 ${gaps[2].toFixed(1)} ms >= 160`)
  })

  t.test('an upstream Retry-After in seconds is honoured', async (t) => {
    const { app, times } = await setup(t, {}, failThenOk(1, 503, { 'retry-after': '1' }))
    const res = await get(app)
    t.equal(res.statusCode, 200)
    t.equal(times.length, 2)
    t.ok(times[1] - times[0] >= 980, `waited ${(times[1] - times[0]).toFixed(0)} ms for Retry-After: 1`)
  })

  t.test('Retry-After is capped at RETRY_MAX_DELAY_MS', async (t) => {
    const { app, times } = await setup(t, { RETRY_MAX_DELAY_MS: '150' }, failThenOk(1, 503, { 'retry-after': '3600' }))
    const res = await get(app)
    t.equal(res.statusCode, 200)
    t.ok(times[1] - times[0] >= 140, 'waited the capped delay')
  })

  t.test('RETRY_MAX_RETRIES=0 disables retries', async (t) => {
    const { app, hits } = await setup(t, { RETRY_MAX_RETRIES: '0' }, status(503))
    const res = await get(app)
    t.equal(res.statusCode, 503)
    t.notOk(res.headers['x-retry-count'])
    t.equal(hits(), 1)
  })

  t.test('retries stop when the breaker opens', async (t) => {
    const { app, hits } = await setup(t, { CB_MAX_FAILURES: '2', RETRY_MAX_RETRIES: '5' }, status(503))
    const res = await get(app)
    t.equal(res.statusCode, 503)
    t.equal(hits(), 2, 'the attempt that tripped the breaker was the last')
    t.equal(breakerState(app), 'open')
    t.equal(res.headers['x-retry-count'], '1')
  })

  t.test('a connection reset before any byte: GET retried, then 502; POST attempted once (FT-04)', async (t) => {
    const { app, hits } = await setup(t, { RETRY_MAX_RETRIES: '2' }, resetBeforeHeaders)
    const res = await get(app)
    t.equal(res.statusCode, 502)
    t.match(res.json(), { status: 'error', error: 'Bad Gateway' })
    t.notMatch(res.body, /127\.0\.0\.1|ECONNRESET/, 'no internal detail leaks')
    t.equal(res.headers['x-retry-count'], '2')
    t.equal(hits(), 3)
    const post = await app.inject({ method: 'POST', url: '/api/users', payload: { a: 1 } })
    t.equal(post.statusCode, 502)
    t.equal(hits(), 4, 'the POST reached the backend exactly once')
    t.equal(app.breakers.list()[1].failures, 4, 'every attempt counted on the breaker')
  })

  t.test('a refused connection is retried, then 502', async (t) => {
    const dead = await startBackend()
    await dead.close()
    const { app } = await setup(t, { RETRY_MAX_RETRIES: '2', USER_SERVICE_URL: dead.url })
    const res = await get(app)
    t.equal(res.statusCode, 502)
    t.equal(res.headers['x-retry-count'], '2')
    t.equal(app.breakers.list()[1].failures, 3)
  })

  t.test('the retry budget caps retries against a failing backend', async (t) => {
    const { app, hits } = await setup(t, { RETRY_MAX_RETRIES: '3' }, status(503))
    const started = Date.now()
    const results = await Promise.all(Array.from({ length: 40 }, () => get(app)))
    const seconds = Math.floor((Date.now() - started) / 1000) + 2
    t.ok(results.every((r) => r.statusCode === 503))
    const retries = hits() - 40
    t.ok(retries <= 10 * seconds + 8, `${retries} retries for 40 requests over <= ${seconds} s`)
    t.ok(retries < 120, 'fewer than without a budget')
  })
})

t.test('attempt timeout', async (t) => {
  t.test('a slow upload does not eat the backend\'s time: the attempt timeout counts from the end of the body', async (t) => {
    // The backend answers 300 ms after the body's last byte, well inside UPSTREAM_TIMEOUT_MS (1 s);
    // the client takes 1.8 s to send the body. The backend gets its whole second after the upload
    // whatever the phase of the gateway's timer (it re-arms while the body is still arriving).
    let arrived: () => void = () => {}
    const arrival = new Promise<void>((resolve) => { arrived = resolve })
    const backend = createServer((req, res) => {
      arrived()
      req.resume()
      req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('done'), 300))
    })
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { backend.closeAllConnections(); backend.close() })
    const upstream = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`
    const { url } = await listen(t, { ...BASE, USER_SERVICE_URL: upstream, AUTH_SERVICE_URL: upstream, UPSTREAM_TIMEOUT_MS: '1000', RETRY_MAX_RETRIES: '0' })
    const { port } = new URL(url)
    const response = new Promise<{ status: number, body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/api/users/upload', headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { body += c })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('error', reject)
      req.write('first part;')
      // The attempt starts when the backend sees the request: end the body 1.8 s after that, just
      // before the second expiry of a timer that would only be re-armed while uploading.
      arrival.then(() => sleep(1800)).then(() => req.end('last part'), reject)
    })
    const res = await response
    t.equal(res.status, 200, `the backend's answer is relayed (got ${res.status})`)
    t.equal(res.body, 'done')
  })
})
