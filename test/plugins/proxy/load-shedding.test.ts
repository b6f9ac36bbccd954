// Concurrency caps over real sockets (docs/configuration.md#load-shedding; docs/reliability.md, FT-03): a capped service sheds
// with 503 while its slots are held, queues within queueTimeoutMs, gives slots back on every ending,
// drops waiters whose client hung up, and never sheds /health, /ready or the admin API.
import type { ServerResponse } from 'node:http'
import t from 'tap'
import { listen, routesFile } from '../../support/app.js'
import { type Teardownable, until } from '../../support/basics.js'
import { ADMIN_PASSWORD, adminAuth } from '../../support/gateway-process.js'
import { http, type HttpResponse, metricValue, parseMetrics } from '../../support/http.js'
import { RawConnection } from '../../support/raw-client.js'
import { isEnvelope, service } from '../../support/suite.js'
import { blackHoleUpstream, flakyUpstream, recordingUpstream, refusedPort } from '../../support/upstreams.js'

/** An upstream that holds every response until the test lets it go. */
async function gateUpstream (t: Teardownable) {
  const held: ServerResponse[] = []
  const up = await recordingUpstream(t, (_req, res) => { held.push(res) })
  return Object.assign(up, {
    held,
    /** Answers every held request 200. */
    open () { for (const res of held.splice(0)) if (!res.destroyed) res.end('{"ok":true}') }
  })
}

async function gateway (t: Teardownable, services: unknown[], env: Record<string, string> = {}): Promise<number> {
  const { url } = await listen(t, {
    ROUTES_FILE: routesFile(t, services),
    ADMIN_PASSWORD,
    RATE_LIMIT_BURST: '10000',
    CB_MAX_FAILURES: '1000',
    RETRY_INITIAL_DELAY_MS: '10',
    RETRY_MAX_DELAY_MS: '20',
    ...env
  })
  return Number(new URL(url).port)
}

const shedCount = async (port: number, name: string): Promise<number> =>
  metricValue(parseMetrics((await http(port, '/metrics')).body), 'gateway_requests_shed_total', { service: name })

function isShed (res: HttpResponse): boolean {
  return res.status === 503 && res.headers['retry-after'] === '1' && res.headers['x-gateway-overload'] === 'concurrency' && isEnvelope(res.body)
}

t.test('a capped service answers 503 while a slow request holds its slot; health and admin still answer', async (t) => {
  const gate = await gateUpstream(t)
  const port = await gateway(t, [service('held', '/api/held', gate.url, { maxConcurrent: 1 })])
  const first = http(port, '/api/held/a')
  t.ok(await until(() => gate.held.length === 1, 5000), 'the first request reached the upstream')

  const second = await http(port, '/api/held/b')
  t.ok(isShed(second), `the second: 503, Retry-After: 1, X-Gateway-Overload: concurrency, the envelope (${second.status} ${JSON.stringify(second.headers)})`)
  t.equal(second.json().error, 'Service Unavailable')
  t.equal(gate.requests.length, 1, 'the shed request never reached the upstream')
  t.equal(await shedCount(port, 'held'), 1, 'gateway_requests_shed_total{service} counts it')

  for (const path of ['/health', '/ready']) t.equal((await http(port, path)).status, 200, `${path} answers while the service is saturated`)
  const admin = await http(port, '/admin/apikeys', { headers: { authorization: adminAuth() } })
  t.equal(admin.status, 200, 'the admin API answers while the service is saturated')

  gate.open()
  t.equal((await first).status, 200, 'the slow request completes')
  const third = http(port, '/api/held/c')
  t.ok(await until(() => gate.held.length === 1, 5000), 'once it is done the slot is free again')
  gate.open()
  t.equal((await third).status, 200)
})

t.test('a queued request that gets a slot within queueTimeoutMs succeeds', async (t) => {
  const gate = await gateUpstream(t)
  const port = await gateway(t, [service('queued', '/api/queued', gate.url, { maxConcurrent: 1, queueTimeoutMs: 10_000 })])
  const first = http(port, '/api/queued/a')
  t.ok(await until(() => gate.held.length === 1, 5000))
  const second = http(port, '/api/queued/b')
  t.notOk(await until(() => gate.requests.length > 1, 300), 'the second waits in the queue, not at the upstream')
  gate.open()
  t.equal((await first).status, 200)
  t.ok(await until(() => gate.held.length === 1, 5000), 'the freed slot goes to the queued request')
  gate.open()
  const res = await second
  t.equal(res.status, 200, 'and it succeeds')
  t.equal(gate.requests.length, 2)
  t.equal(await shedCount(port, 'queued'), 0, 'nothing was shed')
})

t.test('a queued POST keeps its body: it is read only once the request has a slot', async (t) => {
  const gate = await gateUpstream(t)
  const port = await gateway(t, [service('upload', '/api/upload', gate.url, { maxConcurrent: 1, queueTimeoutMs: 10_000 })])
  const first = http(port, '/api/upload/a')
  t.ok(await until(() => gate.held.length === 1, 5000))
  const body = 'x'.repeat(100_000)
  const post = http(port, '/api/upload/b', { method: 'POST', headers: { 'content-type': 'text/plain' }, body })
  t.notOk(await until(() => gate.requests.length > 1, 300), 'the POST waits in the queue')
  gate.open()
  t.equal((await first).status, 200)
  t.ok(await until(() => gate.held.length === 1, 5000))
  gate.open()
  t.equal((await post).status, 200)
  t.equal(gate.requests[1].body.toString(), body, 'the upstream got the whole body')
})

t.test('a queued request whose queueTimeoutMs runs out is shed', async (t) => {
  const gate = await gateUpstream(t)
  const port = await gateway(t, [service('short', '/api/short', gate.url, { maxConcurrent: 1, queueTimeoutMs: 100 })])
  const first = http(port, '/api/short/a')
  t.ok(await until(() => gate.held.length === 1, 5000))
  const second = await http(port, '/api/short/b')
  t.ok(isShed(second), `503 with the overload header after waiting (${second.status})`)
  t.equal(gate.requests.length, 1)
  gate.open()
  t.equal((await first).status, 200)
})

t.test('a client that hangs up while queued leaves the queue', async (t) => {
  const gate = await gateUpstream(t)
  // One slot, and room for one waiter (the queue holds at most maxConcurrent requests).
  const port = await gateway(t, [service('leave', '/api/leave', gate.url, { maxConcurrent: 1, queueTimeoutMs: 30_000 })])
  const first = http(port, '/api/leave/a')
  t.ok(await until(() => gate.held.length === 1, 5000))
  const quitter = await RawConnection.open(port)
  await quitter.write('GET /api/leave/quitter HTTP/1.1\r\nHost: g\r\n\r\n')
  await new Promise((resolve) => setTimeout(resolve, 200))
  quitter.destroy()
  await new Promise((resolve) => setTimeout(resolve, 200))
  // Were the quitter still queued, the queue would be full and this one shed at once.
  const next = http(port, '/api/leave/next')
  t.notOk(await until(() => gate.requests.length > 1, 300), 'the next request is queued, not shed')
  gate.open()
  t.equal((await first).status, 200)
  t.ok(await until(() => gate.held.length === 1, 5000))
  gate.open()
  t.equal((await next).status, 200, 'and gets the slot')
  t.same(gate.requests.map((r) => r.url), ['/api/leave/a', '/api/leave/next'], 'the quitter never reached the upstream')
})

t.test('the slot is given back on every ending: client abort, connection error, retries exhausted', async (t) => {
  const gate = await gateUpstream(t)
  const refused = await refusedPort()
  const always503 = await flakyUpstream(t, [], { then: 503 })
  const port = await gateway(t, [
    service('abort', '/api/abort', gate.url, { maxConcurrent: 1 }),
    service('refused', '/api/refused', refused.url, { maxConcurrent: 1 }),
    service('exhausted', '/api/exhausted', always503.url, { maxConcurrent: 1 })
  ])

  const leaving = await RawConnection.open(port)
  await leaving.write('GET /api/abort/a HTTP/1.1\r\nHost: g\r\n\r\n')
  t.ok(await until(() => gate.held.length === 1, 5000))
  leaving.destroy()
  t.ok(await until(() => gate.requests[0].aborted, 5000), 'the upstream request is aborted with the client')
  const after = http(port, '/api/abort/b')
  t.ok(await until(() => gate.requests.length === 2, 5000), 'after a client abort the next request gets the slot')
  gate.open()
  t.equal((await after).status, 200)

  for (let i = 0; i < 3; i++) {
    const res = await http(port, '/api/refused/x')
    t.equal(res.status, 502, `connection refused, attempt ${i + 1}: 502, not shed`)
  }
  for (let i = 0; i < 3; i++) {
    const res = await http(port, '/api/exhausted/x')
    t.ok(res.status === 503 && res.headers['x-gateway-overload'] === undefined, `retries exhausted, round ${i + 1}: the backend's 503, not shed`)
  }
  t.equal(always503.requests.length, 12, 'every round made all its attempts (1 + 3 retries)')
  t.equal(await shedCount(port, 'refused') + await shedCount(port, 'exhausted'), 0)
})

t.test('MAX_CONCURRENT_REQUESTS caps in-flight requests across services', async (t) => {
  const gate = await gateUpstream(t)
  const other = await gateUpstream(t)
  const port = await gateway(t, [service('one', '/api/one', gate.url), service('two', '/api/two', other.url)], { MAX_CONCURRENT_REQUESTS: '1' })
  const first = http(port, '/api/one/a')
  t.ok(await until(() => gate.held.length === 1, 5000))
  const res = await http(port, '/api/two/b')
  t.ok(isShed(res), `another service is shed while the global slot is held (${res.status})`)
  t.equal(other.requests.length, 0)
  t.equal(await shedCount(port, 'two'), 1, 'counted for the service that was shed')
  t.equal((await http(port, '/health')).status, 200, '/health is never shed')
  gate.open()
  t.equal((await first).status, 200)
  const again = http(port, '/api/two/c')
  t.ok(await until(() => other.held.length === 1, 5000), 'the global slot is free again')
  other.open()
  t.equal((await again).status, 200)
})

t.test('FT-03 a black-holed service holds at most maxConcurrent requests; the rest are shed at once', async (t) => {
  const hole = await blackHoleUpstream(t)
  const port = await gateway(t, [service('hole', '/api/hole', hole.url, { maxConcurrent: 2, timeoutMs: 1000, retry: { maxRetries: 0 } })], { HEALTH_CHECK_TIMEOUT_SECONDS: '5' })
  // The active health check opens one connection of its own at start (and never gets an answer).
  t.ok(await until(() => hole.connections === 1, 5000))
  let answered = 0
  const all = Array.from({ length: 8 }, async (_, i) => {
    const res = await http(port, `/api/hole/${i}`, { timeoutMs: 15_000 })
    answered++
    return res
  })
  // While two requests sit on the black hole, the gateway's own routes answer.
  t.ok(await until(() => answered === 6, 5000), 'six answered while two still wait on the black hole')
  t.equal(hole.connections - 1, 2, 'the black hole got exactly 2 proxied connections')
  t.equal((await http(port, '/health')).status, 200, '/health answers while the service is saturated')
  const results = await Promise.all(all)
  const shed = results.filter(isShed)
  const timedOut = results.filter((r) => r.status === 504 || r.status === 502)
  t.equal(shed.length, 6, `6 of 8 are shed with 503 (${results.map((r) => r.status).join(',')})`)
  t.equal(timedOut.length, 2, 'the 2 admitted end with 504 (or 502)')
  t.equal(await shedCount(port, 'hole'), 6)
})

t.test('a PATCH of another field keeps the service\'s concurrency count: never more than maxConcurrent at the backend', async (t) => {
  const gate = await gateUpstream(t)
  // SERVICES_SOURCE=store (no ROUTES_FILE): the service is managed through the admin API.
  const { app, url } = await listen(t, { ADMIN_PASSWORD, RATE_LIMIT_BURST: '10000', CB_MAX_FAILURES: '1000' })
  const port = Number(new URL(url).port)
  const adminCall = async (method: 'PUT' | 'PATCH', payload: object) => await app.inject({
    method, url: '/admin/services/held', headers: { authorization: adminAuth() }, payload
  })
  t.equal((await adminCall('PUT', { prefix: '/api/held', backends: [{ url: gate.url }], maxConcurrent: 2, rateLimit: false })).statusCode, 201)

  const first = [http(port, '/api/held/1'), http(port, '/api/held/2')]
  t.ok(await until(() => gate.held.length === 2, 5000), 'two requests in flight')
  t.equal((await adminCall('PATCH', { timeoutMs: 20_000 })).statusCode, 200, 'another field changed')

  const after = await Promise.all([http(port, '/api/held/3'), http(port, '/api/held/4')])
  t.ok(after.every(isShed), `both shed: the two in flight still hold the cap (${after.map((r) => r.status).join(',')})`)
  t.equal(gate.requests.length, 2, 'never more than 2 at the backend')

  // A higher cap applies to the same count: one more slot, not three.
  t.equal((await adminCall('PATCH', { maxConcurrent: 3 })).statusCode, 200)
  const third = http(port, '/api/held/5')
  t.ok(await until(() => gate.held.length === 3, 5000), 'the raised cap admits one more')
  t.ok(isShed(await http(port, '/api/held/6')), 'and no more than that')
  t.equal(gate.requests.length, 3)

  // A lower cap: slots held stay held; new requests wait until the count is under the new cap.
  t.equal((await adminCall('PATCH', { maxConcurrent: 1 })).statusCode, 200)
  gate.held.splice(0, 1)[0].end('{"ok":true}')
  t.ok(isShed(await http(port, '/api/held/7')), 'two still in flight: over the new cap of 1')
  gate.open()
  for (const res of await Promise.all([...first, third])) t.equal(res.status, 200)
  const last = http(port, '/api/held/8')
  t.ok(await until(() => gate.held.length === 1, 5000), 'a slot is free once they are done')
  gate.open()
  t.equal((await last).status, 200)
})
