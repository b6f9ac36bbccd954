// A collector that is down, hangs or answers errors never fails a request, and spans past the
// bounded queue are dropped and counted (docs/tracing.md#a-collector-that-is-down): the real
// gateway on port 0, a real backend and a real OTLP receiver (or none at all).
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { listen, routesFile } from '../../support/app.js'
import { until } from '../../support/basics.js'
import { startBackend } from '../../support/backends.js'
import { http, metricValue, parseMetrics } from '../../support/http.js'
import { otlpReceiver } from '../../support/otlp-receiver.js'
import { service } from '../../support/suite.js'
import { refusedPort } from '../../support/upstreams.js'

async function gateway (t: Test, env: Record<string, string>) {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const { app } = await listen(t, {
    ROUTES_FILE: routesFile(t, [service('users', '/api/users', backend.url)]),
    RATE_LIMIT_RPM: '1000000',
    RATE_LIMIT_BURST: '1000000',
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_BSP_SCHEDULE_DELAY: '20',
    ...env
  })
  return { app, port: (app.server.address() as AddressInfo).port }
}

async function dropped (app: FastifyInstance, reason: string): Promise<number> {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  return metricValue(parseMetrics(res.body), 'gateway_trace_spans_dropped_total', { reason })
}

t.test('the dropped-spans counter exists at 0 for both reasons, export on or off', async (t) => {
  for (const exporter of ['none', 'otlp']) {
    const { app } = await gateway(t, { OTEL_TRACES_EXPORTER: exporter })
    t.equal(await dropped(app, 'queue_full'), 0)
    t.equal(await dropped(app, 'export_failed'), 0)
  }
})

t.test('a collector that hangs: requests are served, the queue stays bounded and spans past it are counted', async (t) => {
  const receiver = await otlpReceiver(t)
  receiver.mode = 'hang'
  const { app, port } = await gateway(t, {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_MAX_QUEUE_SIZE: '4',
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4',
    OTEL_EXPORTER_OTLP_TIMEOUT: '60000'
  })
  // Each request ends four spans: the first batch export hangs, four more fill the queue, the rest drop.
  for (let i = 0; i < 10; i++) t.equal((await http(port, '/api/users/1')).status, 200)
  await until(() => receiver.contentTypes.length >= 1, 10_000)
  const full = await dropped(app, 'queue_full')
  t.ok(full >= 40 - 4 - 4 - 4, `${full} spans dropped at the full queue`)
  t.equal(receiver.contentTypes.length, 1, 'one export in flight at a time, however many spans wait')
  // The collector recovers: the held export completes and the queue drains on close.
  receiver.release()
})

t.test('a collector that is down: requests are served and the failed exports are counted', async (t) => {
  const { url } = await refusedPort()
  const { app, port } = await gateway(t, { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_TIMEOUT: '300' })
  for (let i = 0; i < 3; i++) t.equal((await http(port, '/api/users/1')).status, 200)
  let failed = 0
  await until(async () => (failed = await dropped(app, 'export_failed')) > 0, 15_000)
  t.ok(failed > 0, `${failed} spans counted as export_failed`)
})

t.test('a collector answering 500: requests are served and the failed exports are counted', async (t) => {
  const receiver = await otlpReceiver(t)
  receiver.mode = 'error'
  const { app, port } = await gateway(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url })
  t.equal((await http(port, '/api/users/1')).status, 200)
  let failed = 0
  await until(async () => (failed = await dropped(app, 'export_failed')) >= 4, 15_000)
  t.equal(failed, 4, 'the request\'s four spans')
  t.equal(receiver.spans.length, 0)
})
