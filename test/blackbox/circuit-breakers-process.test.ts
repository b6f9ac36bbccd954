// Faults (docs/reliability.md), FT-07: the per-service circuit breaker (docs/proxying.md#retries-and-circuit-breakers) with
// CB_MAX_FAILURES=5, CB_RESET_TIMEOUT_SECONDS=2, one half-open trial (CB_HALF_OPEN_MAX_REQUESTS=1)
// and CB_SUCCESS_THRESHOLD=1, observed from outside: upstream counts, the admin API and /metrics.
import t from 'tap'
import { startGateway } from '../support/gateway-process.js'
import { admin, http, metricValue, nextIp, scrape } from '../support/http.js'
import { isEnvelope, service } from '../support/suite.js'
import { echoUpstream, recordingUpstream } from '../support/upstreams.js'
import { sleep, until } from '../support/basics.js'

const behaviour = { status: 502, delayMs: 0 }
const s1 = await recordingUpstream(t, (_req, res) => {
  setTimeout(() => { res.writeHead(behaviour.status, { 'content-type': 'text/plain' }); res.end('s1') }, behaviour.delayMs)
})
const s2 = await echoUpstream(t)
const gw = await startGateway(t, {
  services: [service('s1', '/api/s1', s1.url), service('s2', '/api/s2', s2.url)],
  env: { CB_MAX_FAILURES: '5', CB_RESET_TIMEOUT_SECONDS: '2', CB_HALF_OPEN_MAX_REQUESTS: '1', CB_SUCCESS_THRESHOLD: '1' }
})

async function state (): Promise<string | undefined> {
  const res = await admin(gw.port, 'GET', '/admin/circuit-breakers', undefined, nextIp())
  const data = res.json().data
  const list = Array.isArray(data) ? data : Object.values(data ?? {})
  return (list as Array<{ name: string, state: string }>).find((b) => b.name === 's1')?.state
}
const gauge = async () => metricValue(await scrape(gw.port), 'gateway_circuit_breaker_state', { service: 's1' })
const post = async () => await http(gw.port, '/api/s1/x', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x', localAddress: nextIp() })
const get = async () => await http(gw.port, '/api/s1/x', { localAddress: nextIp() })

t.test('FT-07 the breaker opens after 5 failures, probes once after 2 s, reopens on failure and closes on success', async (t) => {
  const logStart = gw.logs.length
  t.equal(await state(), 'closed', 'closed at start')
  t.equal(await gauge(), 1, 'gauge 1 (closed)')

  for (let i = 1; i <= 5; i++) t.equal((await post()).status, 502, `failure ${i}: 502 passed through`)
  t.equal(s1.requests.length, 5, 'S1 received 5 requests')

  const fast = await post()
  t.equal(fast.status, 503, 'request 6: 503 from the open breaker')
  t.ok(Number(fast.headers['retry-after']) >= 1, 'with Retry-After')
  t.ok(isEnvelope(fast.body), 'as an error envelope')
  for (let i = 0; i < 5; i++) await get()
  t.equal(s1.requests.length, 5, 'S1 received nothing while open')
  t.equal(await state(), 'open', 'admin API: open')
  t.equal(await gauge(), 0, 'gauge 0 (open)')
  t.equal(metricValue(await scrape(gw.port), 'gateway_circuit_breaker_trips_total', { service: 's1' }), 1, 'one trip counted')
  t.equal((await http(gw.port, '/api/s2/x', { localAddress: nextIp() })).status, 200, 'S2 is unaffected')

  // After 2 s: half-open; the trial fails and the breaker reopens.
  t.ok(await until(async () => await state() === 'half-open', 4000, 100), 'half-open after the reset timeout')
  t.equal(await gauge(), 0.5, 'gauge 0.5 (half-open)')
  t.equal((await post()).status, 502, 'the trial request reaches S1 and fails')
  t.equal(s1.requests.length, 6, 'exactly one trial reached S1')
  t.equal(await state(), 'open', 'a failed trial reopens the breaker')
  t.equal((await get()).status, 503, 'open again: 503 at once')
  t.equal(s1.requests.length, 6, 'nothing else reached S1')

  // S1 recovers; in half-open exactly one of two concurrent requests is let through.
  behaviour.status = 200
  behaviour.delayMs = 300
  t.ok(await until(async () => await state() === 'half-open', 6000, 100), 'half-open again')
  const pair = await Promise.all([get(), (async () => { await sleep(50); return await get() })()])
  t.same(pair.map((r) => r.status).sort(), [200, 503], 'one trial admitted (200), the other refused (503)')
  t.equal(s1.requests.length, 7, 'one trial reached S1')
  t.equal(await state(), 'closed', 'a successful trial closes the breaker')
  t.equal(await gauge(), 1, 'gauge 1 (closed)')
  behaviour.delayMs = 0
  t.equal((await get()).status, 200, 'traffic flows again')

  await gw.logsSettled()
  const transitions = gw.logs.slice(logStart).filter((l) => JSON.stringify(l).includes('"s1"') && /breaker|circuit|open|closed/i.test(JSON.stringify(l)))
  t.ok(transitions.length >= 4, `log lines for the transitions (${transitions.length})`)
  await sleep(0)
})
