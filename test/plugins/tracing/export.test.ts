// OpenTelemetry spans end to end (docs/tracing.md): the real gateway listening on port 0 in front
// of real backends, exporting with the SDK to a real OTLP receiver that decodes what arrives. Each
// case checks the span tree, the attributes and the `traceparent` the backend received.
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { listen, routesFile } from '../../support/app.js'
import { until } from '../../support/basics.js'
import { echo, slow, startBackend, status, type Backend, type Behaviour } from '../../support/backends.js'
import { http } from '../../support/http.js'
import { otlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../../support/otlp-receiver.js'
import { service } from '../../support/suite.js'
import { startWsBackend } from '../../support/ws-backend.js'
import { dial } from '../../support/ws-client.js'
import { parseTraceparent } from '../../../lib/trace-context.js'

const BASE: Record<string, string> = {
  RATE_LIMIT_RPM: '1000000',
  RATE_LIMIT_BURST: '1000000',
  RETRY_MAX_RETRIES: '2',
  RETRY_INITIAL_DELAY_MS: '1',
  RETRY_JITTER_FACTOR: '0',
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_BSP_SCHEDULE_DELAY: '20'
}

interface Setup { app: FastifyInstance, port: number, backend: Proxied, receiver: OtlpReceiver }
/** The backend with only the proxied requests (not the gateway's health checks). */
type Proxied = Backend & { proxied: () => Backend['requests'] }

async function setup (t: Test, env: Record<string, string> = {}, behaviour: Behaviour = echo, extra: Record<string, unknown> = {}): Promise<Setup> {
  const receiver = await otlpReceiver(t)
  const backend = await startBackend(behaviour)
  t.teardown(() => backend.close())
  const { app } = await listen(t, {
    ...BASE,
    ROUTES_FILE: routesFile(t, [service('users', '/api/users', backend.url, extra)]),
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    ...env
  })
  const proxied = Object.assign(backend, { proxied: () => backend.requests.filter((r) => r.url.startsWith('/api/')) })
  return { app, port: (app.server.address() as AddressInfo).port, backend: proxied, receiver }
}

/** 503 for the first proxied request, then echo (the gateway's health check does not count). */
function failFirst (): Behaviour {
  let hits = 0
  return (req, res, body, n) => {
    if (req.url?.startsWith('/api/') === true && ++hits === 1) res.writeHead(503).end()
    else echo(req, res, body, n)
  }
}

const ofTrace = (spans: ReceivedSpan[], traceId: string) => spans.filter((s) => s.traceId === traceId)
const serverSpan = (spans: ReceivedSpan[]) => spans.find((s) => s.kind === 'SERVER')
const byName = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name)

/** The spans of the one trace whose SERVER span arrived, once it and `count` spans in all are in. */
async function traceOf (receiver: OtlpReceiver, count: number, traceId?: string): Promise<ReceivedSpan[]> {
  const spans = await receiver.waitFor((all) => {
    const server = traceId === undefined ? serverSpan(all) : serverSpan(ofTrace(all, traceId))
    return server !== undefined && ofTrace(all, server.traceId).length >= count
  })
  const id = traceId ?? (serverSpan(spans) as ReceivedSpan).traceId
  return ofTrace(spans, id)
}

t.test('a plain request: a SERVER span, authentication and rate-limit spans, one CLIENT span the backend names as parent', async (t) => {
  const { port, backend, receiver } = await setup(t)
  const res = await http(port, '/api/users/7?token=secret')
  t.equal(res.status, 200)
  const spans = await traceOf(receiver, 4)
  t.equal(spans.length, 4)
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.name, 'GET /api/users')
  t.equal(server.parentSpanId, '', 'a new trace: the SERVER span is the root')
  t.equal(server.status, 'UNSET')
  t.match(server.attributes, {
    'http.request.method': 'GET',
    'url.path': '/api/users/7',
    'http.route': '/api/users',
    'http.response.status_code': 200,
    'client.address': '127.0.0.1',
    'gateway.service': 'users'
  })
  t.notOk(JSON.stringify(server.attributes).includes('secret'), 'the query string is never an attribute')
  t.equal(server.resource['service.name'], 'api-gateway')

  const [auth] = byName(spans, 'authenticate')
  const [limit] = byName(spans, 'rate_limit')
  t.equal(auth.kind, 'INTERNAL')
  t.equal(auth.parentSpanId, server.spanId)
  t.equal(auth.attributes['gateway.authenticate.outcome'], 'anonymous')
  t.equal(limit.kind, 'INTERNAL')
  t.equal(limit.parentSpanId, server.spanId)
  t.equal(limit.attributes['gateway.rate_limit.outcome'], 'allowed')

  const client = spans.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  t.equal(client.parentSpanId, server.spanId)
  t.match(client.attributes, { 'server.address': '127.0.0.1', 'server.port': backend.port, 'http.response.status_code': 200 })
  t.notOk('http.request.resend_count' in client.attributes, 'no resend count on a first attempt')
  t.equal(client.status, 'UNSET')

  const sent = parseTraceparent(backend.proxied()[0].headers.traceparent)
  t.same(sent, { traceId: server.traceId, spanId: client.spanId, sampled: true }, 'the backend is told its parent is the attempt span')
  t.equal(receiver.contentTypes[0], 'application/x-protobuf', 'http/protobuf is the default protocol')
})

t.test('a client traceparent is continued: same trace, its span as the SERVER span parent, tracestate unchanged', async (t) => {
  const { port, backend, receiver } = await setup(t)
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const res = await http(port, '/api/users/1', {
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' }
  })
  t.equal(res.status, 200)
  const spans = await traceOf(receiver, 4, traceId)
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.parentSpanId, '00f067aa0ba902b7')
  const client = spans.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  t.equal(backend.proxied()[0].headers.traceparent, `00-${traceId}-${client.spanId}-01`)
  t.equal(backend.proxied()[0].headers.tracestate, 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE')
})

t.test('a retried request has two CLIENT spans; the second carries http.request.resend_count', async (t) => {
  const { port, backend, receiver } = await setup(t, {}, failFirst())
  const res = await http(port, '/api/users/1')
  t.equal(res.status, 200)
  t.equal(backend.proxied().length, 2)
  const spans = await traceOf(receiver, 5)
  const clients = spans.filter((s) => s.kind === 'CLIENT')
  t.equal(clients.length, 2)
  const [first, second] = [...clients].sort((a, b) => (a.startNs < b.startNs ? -1 : 1))
  t.equal(first.attributes['http.response.status_code'], 503)
  t.equal(first.status, 'ERROR')
  t.notOk('http.request.resend_count' in first.attributes)
  t.equal(second.attributes['http.response.status_code'], 200)
  t.equal(second.attributes['http.request.resend_count'], 1)
  t.equal(second.status, 'UNSET')
  t.equal(parseTraceparent(backend.proxied()[0].headers.traceparent)?.spanId, first.spanId, 'each attempt names its own span')
  t.equal(parseTraceparent(backend.proxied()[1].headers.traceparent)?.spanId, second.spanId)
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.attributes['http.response.status_code'], 200)
  t.equal(server.status, 'UNSET')
})

t.test('a 429: the rate-limit span says limited, no CLIENT span, the SERVER span is not an error', async (t) => {
  const { port, backend, receiver } = await setup(t, { RATE_LIMIT_RPM: '1', RATE_LIMIT_BURST: '1' })
  t.equal((await http(port, '/api/users/1')).status, 200)
  const res = await http(port, '/api/users/1')
  t.equal(res.status, 429)
  t.equal(backend.proxied().length, 1)
  const all = await receiver.waitFor((s) => s.filter((x) => x.kind === 'SERVER').length >= 2)
  const limitedServer = all.find((s) => s.kind === 'SERVER' && s.attributes['http.response.status_code'] === 429) as ReceivedSpan
  const spans = await traceOf(receiver, 3, limitedServer.traceId)
  t.equal(spans.length, 3, 'server, authenticate, rate_limit')
  t.equal(limitedServer.status, 'UNSET', 'a 4xx is not a server error')
  const [limit] = byName(spans, 'rate_limit')
  t.equal(limit.attributes['gateway.rate_limit.outcome'], 'limited')
  t.equal(limit.attributes['http.response.status_code'], 429)
  t.notOk(spans.some((s) => s.kind === 'CLIENT'))
})

t.test('a 401: the authentication span says rejected; no rate-limit or CLIENT span', async (t) => {
  const { port, backend, receiver } = await setup(t, { API_KEY_REQUIRED: 'true' })
  const res = await http(port, '/api/users/1')
  t.equal(res.status, 401)
  t.equal(backend.proxied().length, 0)
  const spans = await traceOf(receiver, 2)
  t.equal(spans.length, 2)
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.attributes['http.response.status_code'], 401)
  t.equal(server.status, 'UNSET')
  const [auth] = byName(spans, 'authenticate')
  t.equal(auth.attributes['gateway.authenticate.outcome'], 'rejected')
  t.equal(auth.attributes['http.response.status_code'], 401)
  t.equal(auth.status, 'UNSET', 'a refusal is the step working, not an error')
})

t.test('a breaker-open 503 is an ERROR SERVER span with no CLIENT span', async (t) => {
  const { port, backend, receiver } = await setup(t, { CB_MAX_FAILURES: '1', RETRY_MAX_RETRIES: '0' }, status(500))
  t.equal((await http(port, '/api/users/1')).status, 500)
  const res = await http(port, '/api/users/1')
  t.equal(res.status, 503)
  t.equal(backend.proxied().length, 1, 'the open breaker answered without the backend')
  const all = await receiver.waitFor((s) => s.filter((x) => x.kind === 'SERVER').length >= 2)
  const servers = all.filter((s) => s.kind === 'SERVER')
  const relayed = servers.find((s) => s.attributes['http.response.status_code'] === 500) as ReceivedSpan
  const open = servers.find((s) => s.attributes['http.response.status_code'] === 503) as ReceivedSpan
  t.equal(relayed.status, 'ERROR', 'a relayed 500 is a server error too')
  const relayedClient = (await traceOf(receiver, 4, relayed.traceId)).find((s) => s.kind === 'CLIENT') as ReceivedSpan
  t.equal(relayedClient.status, 'ERROR')
  t.equal(open.status, 'ERROR')
  t.equal(open.attributes['error.type'], '503')
  const spans = await traceOf(receiver, 3, open.traceId)
  t.notOk(spans.some((s) => s.kind === 'CLIENT'))
})

t.test('a client that leaves: the SERVER span records 499 client_gone and the CLIENT span is an error', async (t) => {
  const { port, backend, receiver } = await setup(t, {}, () => { /* never answers */ })
  const req = httpRequest({ host: '127.0.0.1', port, path: '/api/users/1', agent: false })
  req.on('error', () => {})
  req.end()
  await until(() => backend.proxied().length === 1, 10_000)
  req.destroy()
  const spans = await traceOf(receiver, 4)
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.attributes['http.response.status_code'], 499)
  t.equal(server.attributes['gateway.outcome'], 'client_gone')
  const client = spans.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  t.equal(client.status, 'ERROR')
  t.equal(client.attributes['error.type'], 'GW_CLIENT_GONE')
})

t.test('a request that waits for a concurrency slot gets a concurrency_queue span: admitted, shed, or its client gone', async (t) => {
  const { port, backend, receiver } = await setup(t, { RETRY_MAX_RETRIES: '0' }, slow(400), { maxConcurrent: 1, queueTimeoutMs: 2000 })
  const first = http(port, '/api/users/first')
  await until(() => backend.proxied().length === 1, 10_000)
  const waited = await http(port, '/api/users/second')
  t.equal(waited.status, 200)
  t.equal((await first).status, 200)
  const all = await receiver.waitFor((s) => s.filter((x) => x.kind === 'SERVER').length >= 2)
  const serverOf = (path: string): ReceivedSpan => all.find((s) => s.kind === 'SERVER' && s.attributes['url.path'] === path) as ReceivedSpan
  const queuedTrace = await traceOf(receiver, 5, serverOf('/api/users/second').traceId)
  const [queue] = byName(queuedTrace, 'concurrency_queue')
  t.ok(queue !== undefined, 'the waiting request has the span')
  t.equal(queue.kind, 'INTERNAL')
  t.equal(queue.parentSpanId, serverOf('/api/users/second').spanId, 'a child of the SERVER span')
  t.equal(queue.attributes['gateway.concurrency_queue.outcome'], 'admitted')
  t.equal(queue.status, 'UNSET')
  const waitedMs = Number(queue.endNs - queue.startNs) / 1e6
  t.ok(waitedMs >= 150, `it lasts the wait for the first request's slot (${waitedMs.toFixed(0)} ms)`)
  const client = queuedTrace.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  // The SDK anchors each span's clock at its start: spans of one trace agree to about a millisecond.
  t.ok(client.startNs + 2_000_000n >= queue.endNs, 'the attempt starts after the wait')
  const firstTrace = await traceOf(receiver, 4, serverOf('/api/users/first').traceId)
  t.same(byName(firstTrace, 'concurrency_queue'), [], 'a request that found a free slot has none')

  t.test('shed after the queue timeout: outcome shed, 503, an error', async (t) => {
    const { port, backend, receiver } = await setup(t, { RETRY_MAX_RETRIES: '0' }, slow(1000), { maxConcurrent: 1, queueTimeoutMs: 100 })
    const first = http(port, '/api/users/first')
    await until(() => backend.proxied().length === 1, 10_000)
    t.equal((await http(port, '/api/users/second')).status, 503)
    t.equal((await first).status, 200)
    const all = await receiver.waitFor((s) => s.some((x) => x.name === 'concurrency_queue'))
    const [queue] = byName(all, 'concurrency_queue')
    t.equal(queue.attributes['gateway.concurrency_queue.outcome'], 'shed')
    t.equal(queue.attributes['http.response.status_code'], 503)
    t.equal(queue.status, 'ERROR')
  })

  t.test('the client leaves while queued: outcome client_gone, not an error', async (t) => {
    const { port, backend, receiver } = await setup(t, { RETRY_MAX_RETRIES: '0' }, slow(1000), { maxConcurrent: 1, queueTimeoutMs: 5000 })
    const first = http(port, '/api/users/first')
    await until(() => backend.proxied().length === 1, 10_000)
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/users/second', agent: false })
    req.on('error', () => {})
    req.end()
    await new Promise((resolve) => setTimeout(resolve, 150))
    req.destroy()
    t.equal((await first).status, 200)
    const all = await receiver.waitFor((s) => s.some((x) => x.name === 'concurrency_queue'))
    const [queue] = byName(all, 'concurrency_queue')
    t.equal(queue.attributes['gateway.concurrency_queue.outcome'], 'client_gone')
    t.equal(queue.status, 'UNSET')
    t.equal(backend.proxied().length, 1, 'the request that left never reached the backend')
  })
})

t.test('sampling follows the parent: sampled=0 exports nothing and the backend gets the flag', async (t) => {
  const { port, backend, receiver } = await setup(t)
  const unsampled = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
  const sampled = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
  t.equal((await http(port, '/api/users/1', { headers: { traceparent: `00-${unsampled}-00f067aa0ba902b7-00` } })).status, 200)
  const sent = parseTraceparent(backend.proxied()[0].headers.traceparent)
  t.equal(sent?.traceId, unsampled)
  t.equal(sent?.sampled, false)
  t.not(sent?.spanId, '00f067aa0ba902b7', 'the gateway still gives the backend a span id of its own')
  // A sampled request after it: once its spans are in, the unsampled one's would have been too.
  t.equal((await http(port, '/api/users/1', { headers: { traceparent: `00-${sampled}-00f067aa0ba902b7-01` } })).status, 200)
  await traceOf(receiver, 4, sampled)
  t.equal(ofTrace(receiver.spans, unsampled).length, 0, 'nothing of the unsampled trace was exported')
})

t.test('OTEL_TRACES_SAMPLER=always_off exports nothing and tells the backend sampled=0', async (t) => {
  const { port, backend, app } = await setup(t, { OTEL_TRACES_SAMPLER: 'always_off' })
  t.equal((await http(port, '/api/users/1')).status, 200)
  t.equal(parseTraceparent(backend.proxied()[0].headers.traceparent)?.sampled, false)
  t.ok(app.tracing.exporting)
})

t.test('OTEL_EXPORTER_OTLP_PROTOCOL=http/json exports OTLP/JSON; service name and resource attributes from the variables', async (t) => {
  const { port, backend, receiver } = await setup(t, {
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'edge-gateway',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test,team=platform%20core'
  })
  t.equal((await http(port, '/api/users/1')).status, 200)
  const spans = await traceOf(receiver, 4)
  t.equal(receiver.contentTypes[0], 'application/json')
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.name, 'GET /api/users')
  t.match(server.resource, { 'service.name': 'edge-gateway', 'deployment.environment': 'test', team: 'platform core' })
  const client = spans.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  t.equal(parseTraceparent(backend.proxied()[0].headers.traceparent)?.spanId, client.spanId)
})

t.test('the gateway\'s own routes get no span but a trace id', async (t) => {
  const { port, receiver } = await setup(t)
  t.equal((await http(port, '/health')).status, 200)
  t.equal((await http(port, '/api/users/1')).status, 200)
  const spans = await traceOf(receiver, 4)
  t.equal(receiver.spans.filter((s) => s.kind === 'SERVER').length, 1)
  t.equal(serverSpan(spans)?.name, 'GET /api/users')
})

const PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'

t.test('an OpenMetrics scrape shows the trace id as the latency histogram\'s exemplar; the text format is unchanged', async (t) => {
  const { app, port, receiver } = await setup(t)
  t.equal((await http(port, '/api/users/1')).status, 200)
  const server = serverSpan(await traceOf(receiver, 4)) as ReceivedSpan
  const om = await app.inject({ method: 'GET', url: '/metrics', headers: { accept: PROMETHEUS_ACCEPT } })
  t.equal(om.headers['content-type'], 'application/openmetrics-text; version=1.0.0; charset=utf-8')
  const lines = om.body.split('\n')
  t.equal(lines.at(-2), '# EOF')
  t.equal(lines.at(-1), '')
  for (const line of lines.slice(0, -2)) {
    if (!/^# (TYPE|HELP) [a-zA-Z_:][a-zA-Z0-9_:]* /.test(line) && !/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+( # \{.*\} \S+( \S+)?)?$/.test(line)) t.fail(`not an OpenMetrics line: ${line}`)
  }
  const exemplar = lines.find((l) => l.startsWith('gateway_http_request_duration_seconds_bucket{') && l.includes('path="/api/users"') && l.includes(' # {'))
  t.ok(exemplar, 'a bucket carries an exemplar')
  t.match(exemplar, new RegExp(` # \\{trace_id="${server.traceId}"\\} [0-9.e-]+ [0-9.]+$`))
  t.ok(lines.includes('# TYPE gateway_http_requests counter'), 'a counter family is named without _total')
  t.ok(lines.some((l) => l.startsWith('gateway_http_requests_total{method="GET",path="/api/users",status="200"} 1')))

  const text = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(text.headers['content-type'], /^text\/plain/)
  t.notOk(text.body.includes(' # {'), 'no exemplar in Prometheus text')
  t.ok(text.body.includes('# TYPE gateway_rate_limited_total counter'), 'counter names keep _total in text after an OpenMetrics scrape')
  t.ok(text.body.includes('gateway_trace_spans_dropped_total{reason="queue_full"} 0'))
})

t.test('with export off /metrics does not offer OpenMetrics (no exemplars to show)', async (t) => {
  const { app } = await setup(t, { OTEL_TRACES_EXPORTER: 'none' })
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: { accept: PROMETHEUS_ACCEPT } })
  t.match(res.headers['content-type'], /^text\/plain/)
})

t.test('a WebSocket upgrade: a SERVER span ending with 101 and one CLIENT span for the dial, named in the backend\'s traceparent', async (t) => {
  const receiver = await otlpReceiver(t)
  const ws = await startWsBackend()
  t.teardown(() => ws.close())
  const { url } = await listen(t, {
    ...BASE,
    ROUTES_FILE: routesFile(t, [service('chat', '/chat', ws.url, { websocket: true })]),
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url
  })
  const client = await dial(`${url.replace('http:', 'ws:')}/chat/room`, { teardown: t })
  client.close()
  const spans = await traceOf(receiver, 4)
  const server = serverSpan(spans) as ReceivedSpan
  t.equal(server.name, 'GET /chat')
  t.equal(server.attributes['http.response.status_code'], 101)
  t.equal(server.attributes['gateway.outcome'], 'upgraded')
  const dialSpan = spans.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  t.equal(dialSpan.attributes['http.response.status_code'], 101)
  t.equal(dialSpan.status, 'UNSET')
  t.same(parseTraceparent(ws.handshakes[0].headers.traceparent), { traceId: server.traceId, spanId: dialSpan.spanId, sampled: true })
})

t.test('at ratio sampling, exactly the traces a backend was told are sampled are exported, under the same trace id', async (t) => {
  const { port, backend, receiver } = await setup(t, { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' })
  for (let i = 0; i < 24; i++) t.equal((await http(port, '/api/users/1')).status, 200)
  const sent = backend.proxied().map((r) => parseTraceparent(r.headers.traceparent))
  const sampled = new Set(sent.filter((p) => p?.sampled === true).map((p) => p?.traceId))
  t.ok(sampled.size > 0 && sampled.size < 24, `${sampled.size} of 24 sampled at 0.5`)
  const spans = await receiver.waitFor((all) => all.filter((s) => s.kind === 'SERVER').length >= sampled.size)
  const exported = new Set(spans.filter((s) => s.kind === 'SERVER').map((s) => s.traceId))
  t.same([...exported].sort(), [...sampled].sort())
  for (const p of sent.filter((x) => x?.sampled === true)) {
    t.ok(spans.some((s) => s.kind === 'CLIENT' && s.spanId === p?.spanId), 'the sampled backend\'s parent is an exported CLIENT span')
  }
})
