// A tiny backend for docker-compose: echoes what it received as JSON.
// `?status=503` answers that status, `?delay=200` waits that many ms first: enough to watch
// retries, the circuit breaker and latency panels move in Grafana.
// With OTEL_EXPORTER_OTLP_ENDPOINT set it also reports one SERVER span per sampled request, the
// child of the gateway's attempt span named in `traceparent`, so a trace in Jaeger shows the
// gateway and the backend together (docs/tracing.md). No SDK: one OTLP/JSON POST, errors ignored.
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'

const port = Number(process.env.PORT ?? 8080)
const name = process.env.SERVICE_NAME ?? 'sample'
const otlp = process.env.OTEL_EXPORTER_OTLP_ENDPOINT

/** Now, in nanoseconds since the epoch, as the decimal string OTLP/JSON wants. */
const nowNs = () => String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n)

function reportSpan (req, path, status, startNs) {
  const parent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(req.headers.traceparent ?? '')
  if (!otlp || parent === null || (parseInt(parent[3], 16) & 1) === 0) return
  const attr = (key, value) => ({ key, value: typeof value === 'number' ? { intValue: value } : { stringValue: value } })
  const span = {
    traceId: parent[1],
    spanId: randomBytes(8).toString('hex'),
    parentSpanId: parent[2],
    name: `${req.method} ${path}`,
    kind: 2, // SERVER
    startTimeUnixNano: startNs,
    endTimeUnixNano: nowNs(),
    attributes: [attr('http.request.method', req.method), attr('url.path', path), attr('http.response.status_code', status)],
    status: { code: status >= 500 ? 2 : 0 }
  }
  const body = { resourceSpans: [{ resource: { attributes: [attr('service.name', name)] }, scopeSpans: [{ scope: { name: 'sample-backend' }, spans: [span] }] }] }
  fetch(`${otlp.replace(/\/+$/, '')}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .then((res) => res.arrayBuffer(), () => {})
}

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://backend')
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ status: 'ok', service: name }))
    return
  }
  const startNs = nowNs()
  const status = Number(url.searchParams.get('status') ?? 200)
  const delay = Math.min(Number(url.searchParams.get('delay') ?? 0), 60_000)
  let size = 0
  req.on('data', (chunk) => { size += chunk.length })
  req.on('end', () => setTimeout(() => {
    const body = JSON.stringify({
      service: name,
      method: req.method,
      url: req.url,
      consumer: req.headers['x-consumer-id'] ?? null,
      bytes: size
    })
    const code = status >= 100 && status <= 599 ? status : 200
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(body)
    reportSpan(req, url.pathname, code, startNs)
  }, delay))
}).listen(port, '0.0.0.0', () => console.log(`${name} listening on ${port}`))
