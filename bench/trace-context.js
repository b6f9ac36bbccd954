// Tracing's own CPU cost per proxied request (docs/tracing.md#cost), measured in one process
// without the network so a busy machine does not hide it. Not part of `npm run bench` (whose
// `traced` and `export10` cases measure the whole gateway). Run after `npm run build`:
//
//   node bench/trace-context.js
//
// Each loop does per request what plugins/tracing/ does for one proxied request with one attempt:
//   propagation  export off: read `traceparent` (a client's, or none: a new trace id), the sampled
//                flag, one attempt span id and the `traceparent` header written for the backend
//   (export on and not sampled is the propagation path: the plugin decides sampling before the SDK)
//   recorded     export on and sampled: SERVER, authenticate, rate_limit and CLIENT spans with
//                their attributes, ended into the batch processor, and serialized to OTLP/protobuf
//                as the exporter would (nothing is sent; the HTTP request per batch is not counted)
// At 10% sampling a request costs about 0.9 × propagation + 0.1 × recorded. Compare with the
// gateway's CPU time per proxied request (docs/performance.md: about 60-130 µs here).
import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api'
import { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, RandomIdGenerator, TracerProvider } from '@opentelemetry/sdk-trace'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { formatTraceparent, parseTraceparent, sampledBy } from '../dist/lib/trace-context.js'

const N = Number(process.env.N || 200_000)
const RUNS = 5
const CLIENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const ids = new RandomIdGenerator()
const sampler = { name: 'parentbased_always_on', ratio: 1 }

function best (loop) {
  let min = Infinity
  for (let run = 0; run < RUNS; run++) {
    const t0 = process.hrtime.bigint()
    loop()
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / N)
  }
  return min
}

let sink = 0
function propagate (header) {
  const parent = parseTraceparent(header)
  const traceId = parent?.traceId ?? ids.generateTraceId()
  const sampled = sampledBy(sampler, null, parent, traceId)
  const headers = {}
  headers.traceparent = formatTraceparent(traceId, ids.generateSpanId(), sampled)
  sink += headers.traceparent.length
}

function tracerWith (root) {
  const exporter = {
    export (spans, done) {
      sink += ProtobufTraceSerializer.serializeRequest(spans).length
      done({ code: 0 })
    },
    shutdown: async () => {}
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'bench' }),
    sampler: new ParentBasedSampler({ root }),
    spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: 1_000_000, maxExportBatchSize: 512, scheduledDelayMillis: 1 })]
  })
  return { provider, tracer: provider.getTracer('bench') }
}

function request (tracer) {
  // What the plugin does first: the trace id and the sampling decision.
  propagate(undefined)
  const server = tracer.startSpan('GET', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'url.path': '/api/users/7', 'client.address': '127.0.0.1' } }, ROOT_CONTEXT)
  const ctx = trace.setSpan(ROOT_CONTEXT, server)
  for (const name of ['authenticate', 'rate_limit']) {
    const step = tracer.startSpan(name, { kind: SpanKind.INTERNAL }, ctx)
    step.setAttribute(`gateway.${name}.outcome`, 'allowed')
    step.end()
  }
  const attempt = tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: { 'http.request.method': 'GET', 'server.address': '10.0.0.9', 'server.port': 8080 } }, ctx)
  sink += formatTraceparent(server.spanContext().traceId, attempt.spanContext().spanId, true).length
  attempt.setAttribute('http.response.status_code', 200)
  attempt.end()
  server.updateName('GET /api/users')
  server.setAttribute('http.route', '/api/users')
  server.setAttribute('http.response.status_code', 200)
  server.setAttribute('gateway.service', 'users')
  server.end()
}

const baseline = best(() => { for (let i = 0; i < N; i++) sink += i & 1 })
const newTrace = best(() => { for (let i = 0; i < N; i++) propagate(undefined) }) - baseline
const continued = best(() => { for (let i = 0; i < N; i++) propagate(CLIENT) }) - baseline
const on = tracerWith(new AlwaysOnSampler())
// Recorded spans are timed with their serialization: each run ends by flushing the queue.
let recorded = Infinity
const M = Math.ceil(N / 10)
for (let run = 0; run < RUNS; run++) {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < M; i++) request(on.tracer)
  await on.provider.forceFlush()
  recorded = Math.min(recorded, Number(process.hrtime.bigint() - t0) / M)
}
recorded -= baseline
await on.provider.shutdown()

const us = (ns) => `${(ns / 1000).toFixed(2)} µs`
console.log(`propagation, new trace:        ${us(newTrace)} per request`)
console.log(`propagation, continued trace:  ${us(continued)} per request`)
console.log(`export on, recorded (4 spans): ${us(recorded)} per request (serialization included)`)
console.log(`export on at 10% sampling:     ${us(0.9 * newTrace + 0.1 * recorded)} per request`)
if (sink === 0) console.log('')
