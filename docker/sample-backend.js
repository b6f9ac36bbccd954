// A tiny backend for docker-compose: echoes what it received as JSON.
// `?status=503` answers that status, `?delay=200` waits that many ms first: enough to watch
// retries, the circuit breaker and latency panels move in Grafana.
import { createServer } from 'node:http'

const port = Number(process.env.PORT ?? 8080)
const name = process.env.SERVICE_NAME ?? 'sample'

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://backend')
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ status: 'ok', service: name }))
    return
  }
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
    res.writeHead(status >= 100 && status <= 599 ? status : 200, { 'content-type': 'application/json' })
    res.end(body)
  }, delay))
}).listen(port, '0.0.0.0', () => console.log(`${name} listening on ${port}`))
