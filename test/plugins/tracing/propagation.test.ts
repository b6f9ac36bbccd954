// W3C Trace Context with export off, the default (docs/tracing.md#propagation): the real gateway on
// port 0 in front of real HTTP and WebSocket backends. No SDK span is built, yet every backend
// learns its trace and the access line carries the trace id.
import { Writable } from 'node:stream'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { buildApp } from '../../../src/app.js'
import { routesFile, testConfig } from '../../support/app.js'
import { echo, startBackend, type Behaviour } from '../../support/backends.js'
import { http } from '../../support/http.js'
import { service } from '../../support/suite.js'
import { startWsBackend } from '../../support/ws-backend.js'
import { dial } from '../../support/ws-client.js'
import { parseTraceparent } from '../../../lib/trace-context.js'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'

async function setup (t: Test, env: Record<string, string> = {}, behaviour: Behaviour = echo) {
  const backend = await startBackend(behaviour)
  t.teardown(() => backend.close())
  const lines: Array<Record<string, unknown>> = []
  const config = testConfig(t, {
    ROUTES_FILE: routesFile(t, [service('users', '/api/users', backend.url)]),
    RATE_LIMIT_RPM: '1000000',
    RATE_LIMIT_BURST: '1000000',
    RETRY_INITIAL_DELAY_MS: '1',
    ...env
  })
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb() } })
  const app = await buildApp(config, { logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  const proxied = () => backend.requests.filter((r) => r.url.startsWith('/api/'))
  const access = () => lines.filter((l) => l.msg === 'request completed' || l.msg === 'request aborted')
  return { app, port, backend, proxied, access }
}

async function accessLine (access: () => Array<Record<string, unknown>>, n: number): Promise<Record<string, unknown>> {
  for (let i = 0; i < 500 && access().length < n; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  return access()[n - 1]
}

t.test('export is off by default: no spans, yet the tracing decorator is there', async (t) => {
  const { app } = await setup(t)
  t.equal(app.tracing.exporting, false)
})

t.test('without a traceparent the backend gets a new trace, sampled, and the access line its trace id', async (t) => {
  const { port, proxied, access } = await setup(t)
  t.equal((await http(port, '/api/users/1', { headers: { tracestate: 'orphan=1' } })).status, 200)
  const sent = parseTraceparent(proxied()[0].headers.traceparent)
  t.ok(sent !== null, 'a valid traceparent')
  t.equal(sent?.sampled, true, 'parentbased_always_on samples a root')
  t.equal(proxied()[0].headers.tracestate, undefined, 'a tracestate without its traceparent is not forwarded')
  const line = await accessLine(access, 1)
  t.equal(line.trace_id, sent?.traceId)
})

t.test('a valid traceparent is continued: same trace id and flag, the gateway\'s span id as parent, tracestate unchanged', async (t) => {
  const { port, proxied, access } = await setup(t)
  const tracestate = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'
  for (const flags of ['01', '00']) {
    t.equal((await http(port, '/api/users/1', { headers: { traceparent: `00-${TRACE}-${PARENT}-${flags}`, tracestate } })).status, 200)
  }
  const [sampled, unsampled] = proxied()
  const a = parseTraceparent(sampled.headers.traceparent)
  const b = parseTraceparent(unsampled.headers.traceparent)
  t.equal(a?.traceId, TRACE)
  t.equal(a?.sampled, true)
  t.equal(b?.traceId, TRACE)
  t.equal(b?.sampled, false)
  t.not(a?.spanId, PARENT, 'the parent is the gateway\'s span, not the client\'s')
  t.not(a?.spanId, b?.spanId)
  t.equal(sampled.headers.tracestate, tracestate)
  t.equal(unsampled.headers.tracestate, tracestate)
  t.equal((await accessLine(access, 2)).trace_id, TRACE)
})

t.test('an invalid traceparent starts a new trace and drops tracestate', async (t) => {
  const { port, proxied } = await setup(t)
  const invalid = [
    `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper-case hex
    `00-00000000000000000000000000000000-${PARENT}-01`, // all-zero trace id
    `00-${TRACE}-0000000000000000-01`, // all-zero parent id
    `ff-${TRACE}-${PARENT}-01`, // version ff
    `00-${TRACE}-${PARENT}-01-extra`, // version 00 with more after it
    'garbage'
  ]
  for (const traceparent of invalid) {
    t.equal((await http(port, '/api/users/1', { headers: { traceparent, tracestate: 'rojo=1' } })).status, 200)
  }
  const seen = new Set<string>()
  for (const [i, req] of proxied().entries()) {
    const sent = parseTraceparent(req.headers.traceparent)
    t.ok(sent !== null, `case ${i}: the backend still gets a valid traceparent`)
    t.not(sent?.traceId, TRACE, `case ${i}: a new trace`)
    t.equal(req.headers.tracestate, undefined, `case ${i}: no tracestate`)
    seen.add(sent?.traceId ?? '')
  }
  t.equal(seen.size, invalid.length, 'each request its own trace')
})

t.test('a later version with more fields after the flags is continued (forward compatible)', async (t) => {
  const { port, proxied } = await setup(t)
  t.equal((await http(port, '/api/users/1', { headers: { traceparent: `01-${TRACE}-${PARENT}-01-what-comes-next` } })).status, 200)
  t.equal(parseTraceparent(proxied()[0].headers.traceparent)?.traceId, TRACE)
})

t.test('each retry names a new span of the same trace', async (t) => {
  let hits = 0
  const { port, proxied } = await setup(t, { RETRY_MAX_RETRIES: '2' }, (req, res, body, n) => {
    if (req.url?.startsWith('/api/') === true && ++hits === 1) res.writeHead(503).end()
    else echo(req, res, body, n)
  })
  t.equal((await http(port, '/api/users/1', { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } })).status, 200)
  const [first, second] = proxied().map((r) => parseTraceparent(r.headers.traceparent))
  t.equal(first?.traceId, TRACE)
  t.equal(second?.traceId, TRACE)
  t.not(first?.spanId, second?.spanId)
})

t.test('the sampler decides a new trace\'s flag even with export off', async (t) => {
  const { port, proxied } = await setup(t, { OTEL_TRACES_SAMPLER: 'parentbased_always_off' })
  t.equal((await http(port, '/api/users/1')).status, 200)
  t.equal((await http(port, '/api/users/1', { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } })).status, 200)
  const [root, child] = proxied().map((r) => parseTraceparent(r.headers.traceparent))
  t.equal(root?.sampled, false, 'a root is not sampled')
  t.equal(child?.sampled, true, 'a sampled parent still is')
})

t.test('a client\'s own traceparent never reaches the backend as sent', async (t) => {
  const { port, proxied } = await setup(t)
  const sentByClient = `00-${TRACE}-${PARENT}-01`
  t.equal((await http(port, '/api/users/1', { headers: { traceparent: sentByClient } })).status, 200)
  const raw = proxied()[0].rawHeaders
  const lines = raw.filter((_v, i) => i % 2 === 0 && raw[i].toLowerCase() === 'traceparent')
  t.equal(lines.length, 1, 'one traceparent line')
  t.not(proxied()[0].headers.traceparent, sentByClient)
})

t.test('a WebSocket upgrade is traced the same way', async (t) => {
  const ws = await startWsBackend()
  t.teardown(() => ws.close())
  const config = testConfig(t, {
    ROUTES_FILE: routesFile(t, [service('chat', '/chat', ws.url, { websocket: true })]),
    RATE_LIMIT_RPM: '1000000',
    RATE_LIMIT_BURST: '1000000'
  })
  const app = await buildApp(config)
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const client = await dial(`${url.replace('http:', 'ws:')}/chat/room`, {
    headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'rojo=1' },
    teardown: t
  })
  client.close()
  const sent = parseTraceparent(ws.handshakes[0].headers.traceparent)
  t.equal(sent?.traceId, TRACE)
  t.equal(sent?.sampled, true)
  t.not(sent?.spanId, PARENT)
  t.equal(ws.handshakes[0].headers.tracestate, 'rojo=1')
})
