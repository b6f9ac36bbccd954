// Faults (docs/reliability.md), upstream faults: FT-01…FT-06 and FT-08, one gateway child, one
// service per case so no case trips another's breaker (CB_MAX_FAILURES=5, every attempt counts).
import t from 'tap'
import { startGateway } from '../support/gateway-process.js'
import { http, metricValue, nextIp, scrape } from '../support/http.js'
import { isEnvelope, leaks, logsAtLeast, send, service } from '../support/suite.js'
import { sleep, until } from '../support/basics.js'
import {
  blackHoleUpstream, flakyUpstream, MALFORMED, malformedUpstream, refusedPort, resetBeforeHeadersUpstream,
  resetMidBodyUpstream, slowUpstream, type Recorded
} from '../support/upstreams.js'

const refused = await refusedPort()
const slow = await slowUpstream(t, 2000)
const hole = await blackHoleUpstream(t)
const resetGet = await resetBeforeHeadersUpstream(t)
const resetPost = await resetBeforeHeadersUpstream(t)
const midBody = await resetMidBodyUpstream(t)
const flaky = await flakyUpstream(t, [503, 503], { retryAfter: '1' })
const always503 = await flakyUpstream(t, [], { retryAfter: '1', then: 503 })
const mixed = await flakyUpstream(t, [502, 504])
const flakyPost = await flakyUpstream(t, [503], { retryAfter: '1' })
const malformed = await malformedUpstream(t)

const gw = await startGateway(t, {
  services: [
    service('refused-get', '/api/refused-get', refused.url),
    service('refused-post', '/api/refused-post', refused.url),
    service('slow', '/api/slow', slow.url),
    service('hole', '/api/hole', hole.url),
    service('reset-get', '/api/reset-get', resetGet.url),
    service('reset-post', '/api/reset-post', resetPost.url),
    service('midbody', '/api/midbody', midBody.url),
    service('flaky', '/api/flaky', flaky.url),
    service('always503', '/api/always503', always503.url),
    service('mixed', '/api/mixed', mixed.url),
    service('flaky-post', '/api/flaky-post', flakyPost.url),
    ...Object.keys(MALFORMED).map((v) => service(`mal-${v}`, `/api/mal-${v}`, malformed.url))
  ]
})

const counter = async (name: string, svc: string) => metricValue(await scrape(gw.port), name, { service: svc })
const gaps = (recs: Recorded[]) => recs.slice(1).map((r, i) => r.at - recs[i].at)

t.test('FT-01 a refused upstream connection gives a clean 502, bounded attempts, then 503 from the breaker', async (t) => {
  const logStart = gw.logs.length
  const attemptsBefore = await counter('gateway_backend_requests_total', 'refused-get')
  const get = await http(gw.port, '/api/refused-get/x', { localAddress: nextIp() })
  t.equal(get.status, 502, 'GET: 502')
  t.ok(isEnvelope(get.body), 'GET: error envelope')
  t.same(leaks(get.body), [], `GET: no address, port or errno in the body (${get.body})`)
  const getAttempts = await counter('gateway_backend_requests_total', 'refused-get') - attemptsBefore
  t.ok(getAttempts >= 1 && getAttempts <= 3, `GET: at most 3 attempts in all (${getAttempts})`)
  t.ok(await counter('gateway_backend_errors_total', 'refused-get') >= 1, 'gateway_backend_errors_total{service} counts it')
  await gw.logsSettled()
  t.ok(logsAtLeast(gw, 40, logStart).some((l) => JSON.stringify(l).includes('refused-get')), 'a WARN names the service')

  const post = await http(gw.port, '/api/refused-post/x', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}', localAddress: nextIp() })
  t.equal(post.status, 502, 'POST: 502')
  t.equal(await counter('gateway_backend_requests_total', 'refused-post'), 1, 'POST: exactly one attempt')

  // Keep failing until the breaker opens (5 consecutive failed attempts), then 503 with Retry-After.
  let open = null
  for (let i = 0; i < 6 && open === null; i++) {
    const r = await http(gw.port, '/api/refused-get/x', { localAddress: nextIp() })
    if (r.status === 503) open = r
    else t.equal(r.status, 502, `GET ${i + 2}: 502 while closed`)
  }
  t.ok(open !== null, 'the breaker opened')
  t.ok(Number(open?.headers['retry-after']) >= 1, 'the breaker-open 503 carries Retry-After')
  t.ok(isEnvelope(open?.body ?? ''), 'the breaker-open 503 is an error envelope')
})

t.test('FT-02 a slow upstream gives 504 and its request is aborted', async (t) => {
  const started = Date.now()
  const res = await http(gw.port, '/api/slow/x', { localAddress: nextIp() })
  const elapsed = Date.now() - started
  t.equal(res.status, 504, '504')
  t.ok(isEnvelope(res.body), 'error envelope')
  t.ok(elapsed >= 450, `waited for the 500 ms attempt timeout (${elapsed} ms)`)
  t.ok(slow.requests.length >= 1 && slow.requests.length <= 3, `1 to 3 attempts (${slow.requests.length})`)
  t.ok(await until(() => slow.requests.every((r) => r.aborted), 5000), 'every upstream request was aborted before the upstream answered')
  t.ok(await counter('gateway_backend_errors_total', 'slow') >= 1, 'gateway_backend_errors_total{service} counts the timeout')
})

t.test('FT-03 a black-holed upstream times out and concurrent requests all finish', async (t) => {
  const one = await http(gw.port, '/api/hole/x', { localAddress: nextIp() })
  t.ok(one.status === 504 || one.status === 502, `one request: 504 or 502 (got ${one.status})`)
  const many = await Promise.all(Array.from({ length: 10 }, async () => await http(gw.port, '/api/hole/y', { localAddress: nextIp(), timeoutMs: 15000 })))
  t.ok(many.every((r) => [502, 503, 504].includes(r.status)), `10 concurrent: all answered 502/503/504 (${many.map((r) => r.status).join(',')})`)
  t.ok(hole.connections >= 1, 'the black hole accepted connections')
})

t.test('FT-04 an upstream reset before headers: GET retried twice then 502, POST tried once', async (t) => {
  const get = await http(gw.port, '/api/reset-get/x', { localAddress: nextIp() })
  t.equal(get.status, 502, 'GET: 502')
  t.ok(isEnvelope(get.body) && leaks(get.body).length === 0, 'GET: clean error envelope')
  t.equal(resetGet.requests.length, 3, 'GET: 1 attempt + 2 retries')
  t.ok(gaps(resetGet.requests).every((g) => g >= 20), `GET: back-off between attempts (${gaps(resetGet.requests).join(', ')} ms)`)
  t.equal(get.headers['x-retry-count'], '2', 'GET: X-Retry-Count: 2')

  const post = await http(gw.port, '/api/reset-post/x', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello', localAddress: nextIp() })
  t.equal(post.status, 502, 'POST: 502')
  t.equal(resetPost.requests.length, 1, 'POST: exactly one attempt')
})

t.test('FT-05 an upstream reset mid-body: the client gets the head and the bytes sent, then a close, no retry', async (t) => {
  const logStart = gw.logs.length
  const errorsBefore = await counter('gateway_backend_errors_total', 'midbody')
  const res = await send(gw, 'GET /api/midbody/x HTTP/1.1\r\nHost: g\r\n\r\n', { deadlineMs: 3000 })
  t.same(res.statuses, [200], 'one 200 head, no second response')
  t.equal(res.responses[0]?.body.toString('latin1'), '1234567', 'the 7 bytes sent arrive')
  t.notOk(res.responses[0]?.complete, 'the body is incomplete')
  t.ok(res.closed, 'the client connection is closed (not reused)')
  await sleep(300)
  t.equal(midBody.requests.length, 1, 'no retry once bytes were sent')
  await gw.logsSettled()
  t.ok(logsAtLeast(gw, 40, logStart).some((l) => /reset|abort|upstream/i.test(String(l.event ?? l.msg))), 'a WARN/ERROR log line records it')
  t.ok(await counter('gateway_backend_errors_total', 'midbody') > errorsBefore, 'gateway_backend_errors_total{service} counts it')
})

t.test('FT-06 retries on 502/503/504 for idempotent requests, honouring Retry-After up to the cap', async (t) => {
  const retriesBefore = await counter('gateway_retries_total', 'flaky')
  const ok = await http(gw.port, '/api/flaky/x', { localAddress: nextIp() })
  t.equal(ok.status, 200, '503, 503, then 200: the client gets 200')
  t.equal(flaky.requests.length, 3, 'the upstream saw 3 attempts')
  const g = gaps(flaky.requests)
  t.ok(g.every((x) => x >= 200), `Retry-After: 1 honoured up to RETRY_MAX_DELAY_MS=250 (gaps ${g.join(', ')} ms)`)
  t.equal(ok.headers['x-retry-count'], '2', 'X-Retry-Count: 2')
  t.equal(await counter('gateway_retries_total', 'flaky') - retriesBefore, 2, 'gateway_retries_total{service} counts 2 retries')

  const always = await http(gw.port, '/api/always503/x', { localAddress: nextIp() })
  t.equal(always.status, 503, 'always 503: the 503 is passed through')
  t.equal(always503.requests.length, 3, 'always 503: 3 attempts')
  t.equal(always.headers['retry-after'], '1', 'always 503: with the upstream Retry-After')

  const m = await http(gw.port, '/api/mixed/x', { localAddress: nextIp() })
  t.equal(m.status, 200, '502, 504, then 200: the client gets 200')
  t.equal(mixed.requests.length, 3, '502 and 504 are retried')
  t.ok(gaps(mixed.requests).every((x) => x >= 20), `back-off at least 25 ms minus jitter (${gaps(mixed.requests).join(', ')} ms)`)

  const post = await http(gw.port, '/api/flaky-post/x', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x', localAddress: nextIp() })
  t.equal(post.status, 503, 'POST: the 503 is passed through')
  t.equal(flakyPost.requests.length, 1, 'POST: one attempt')
})

t.test('FT-08 malformed upstream responses become 502 and the connection is not reused', async (t) => {
  for (const variant of Object.keys(MALFORMED)) {
    const before = malformed.requests.length
    const res = await send(gw, `GET /api/mal-${variant}/${variant} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n`)
    const r = res.responses.find((x) => x.status >= 200)
    const body = r?.body.toString('latin1') ?? ''
    if (variant === 'long-body' && r?.status === 200) {
      t.equal(body, 'GOOD', `${variant}: only the declared bytes reach the client`)
    } else {
      t.equal(r?.status, 502, `${variant}: 502`)
    }
    t.equal(res.statuses.length, 1, `${variant}: one response`)
    t.notMatch(res.raw, /EVIL|X-Evil|X-Injected/i, `${variant}: nothing of the bad response reaches the client`)
    const rec = malformed.requests[before]
    t.ok(rec !== undefined, `${variant}: the upstream was asked`)
    if (rec !== undefined) t.ok(await until(() => malformed.closedPorts.has(rec.remotePort), 5000), `${variant}: the upstream connection was closed`)
  }
})
