// The compose stack's promise, offline: one request through the gateway makes one trace holding
// the gateway's spans and the sample backend's (docker/sample-backend.js, a real child process),
// the backend's SERVER span a child of the gateway's attempt span, all at one OTLP receiver.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { listen } from '../support/app.js'
import { freePort, until } from '../support/basics.js'
import { http } from '../support/http.js'
import { otlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.js'

const SAMPLE = fileURLToPath(new URL('../../docker/sample-backend.js', import.meta.url))

t.test('a request through the gateway to the sample backend is one trace with both services', async (t) => {
  const receiver = await otlpReceiver(t)
  const port = await freePort()
  const child = spawn(process.execPath, [SAMPLE], {
    env: { PORT: String(port), SERVICE_NAME: 'user-service', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
    stdio: 'ignore'
  })
  t.teardown(() => { child.kill() })
  t.ok(await until(async () => (await http(port, '/health').catch(() => ({ status: 0 }))).status === 200, 10_000), 'the sample backend is up')
  const { app } = await listen(t, {
    USER_SERVICE_URL: `http://127.0.0.1:${port}`,
    RATE_LIMIT_RPM: '1000000',
    RATE_LIMIT_BURST: '1000000',
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '20'
  })
  const gatewayPort = (app.server.address() as { port: number }).port
  t.equal((await http(gatewayPort, '/api/users/7')).status, 200)
  const spans = await receiver.waitFor((all) => all.some((s) => s.resource['service.name'] === 'user-service') && all.some((s) => s.kind === 'SERVER' && s.resource['service.name'] === 'api-gateway'))
  const backend = spans.find((s) => s.resource['service.name'] === 'user-service') as ReceivedSpan
  const client = spans.find((s) => s.kind === 'CLIENT') as ReceivedSpan
  const server = spans.find((s) => s.kind === 'SERVER' && s.resource['service.name'] === 'api-gateway') as ReceivedSpan
  t.equal(backend.traceId, server.traceId, 'one trace')
  t.equal(backend.parentSpanId, client.spanId, 'the backend hangs under the gateway\'s attempt')
  t.equal(backend.kind, 'SERVER')
  t.equal(backend.name, 'GET /api/users/7')
})
