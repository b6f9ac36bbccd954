// Tracing configuration from the standard OpenTelemetry variables (docs/tracing.md, docs/configuration.md#tracing).
import t from 'tap'
import { loadConfig } from '../../lib/config.js'
import { configProblems } from '../support/app.js'

const load = (env: Record<string, string> = {}) => loadConfig({ ADMIN_AUTH_ENABLED: 'false', ...env }, { dotenv: false }).tracing

t.test('by default trace context is propagated and nothing is exported', async (t) => {
  const c = load()
  t.equal(c.exporting, false)
  t.equal(c.url, 'http://localhost:4318/v1/traces')
  t.equal(c.protocol, 'http/protobuf')
  t.same(c.sampler, { name: 'parentbased_always_on', ratio: 1 })
  t.equal(c.resource['service.name'], 'api-gateway')
  t.same(c.batch, { scheduledDelayMillis: 5000, exportTimeoutMillis: 30000, maxQueueSize: 2048, maxExportBatchSize: 512 })
})

t.test('OTEL_TRACES_EXPORTER=otlp exports, unless OTEL_SDK_DISABLED=true', async (t) => {
  t.equal(load({ OTEL_TRACES_EXPORTER: 'otlp' }).exporting, true)
  t.equal(load({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'true' }).exporting, false)
})

t.test('the general endpoint gets /v1/traces appended; the traces endpoint is used as is and wins', async (t) => {
  t.equal(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).url, 'http://collector:4318/v1/traces')
  t.equal(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://vendor.example/otlp/spans' }).url, 'https://vendor.example/otlp/spans')
})

t.test('the traces protocol, timeout and headers win over the general ones; headers are decoded', async (t) => {
  const c = load({
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf',
    OTEL_EXPORTER_OTLP_TIMEOUT: '3000',
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '2000',
    OTEL_EXPORTER_OTLP_HEADERS: 'x-team=core,authorization=Bearer%20abc',
    OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-team=edge'
  })
  t.equal(c.protocol, 'http/protobuf')
  t.equal(c.exportTimeoutMs, 2000)
  t.same(c.headers, { 'x-team': 'edge', authorization: 'Bearer abc' })
  t.equal(load({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).protocol, 'http/json')
})

t.test('OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES', async (t) => {
  t.equal(load({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs,region=eu' }).resource['service.name'], 'from-attrs')
  const c = load({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs,region=eu', OTEL_SERVICE_NAME: 'edge' })
  t.equal(c.resource['service.name'], 'edge')
  t.equal(c.resource.region, 'eu')
})

t.test('a sampler ratio and a batch size over the queue size', async (t) => {
  t.same(load({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }).sampler, { name: 'parentbased_traceidratio', ratio: 0.1 })
  t.equal(load({ OTEL_BSP_MAX_QUEUE_SIZE: '8', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '512' }).batch.maxExportBatchSize, 8)
})

t.test('bad values stop the start with a line naming the variable, never a header value', async (t) => {
  const problems = configProblems(() => load({
    OTEL_TRACES_EXPORTER: 'zipkin',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
    OTEL_TRACES_SAMPLER: 'sometimes',
    OTEL_TRACES_SAMPLER_ARG: '1.5',
    OTEL_BSP_MAX_QUEUE_SIZE: '0'
  }))
  for (const name of ['OTEL_TRACES_EXPORTER', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_BSP_MAX_QUEUE_SIZE']) {
    t.ok(problems.some((p) => p.startsWith(`${name}:`)), `${name} is named`)
  }
  const headers = configProblems(() => load({ OTEL_EXPORTER_OTLP_HEADERS: 'authorization=secret%ZZtoken' }))
  t.equal(headers.length, 1)
  t.match(headers[0], /^OTEL_EXPORTER_OTLP_HEADERS: /)
  t.notMatch(headers[0], /secret/)
})
