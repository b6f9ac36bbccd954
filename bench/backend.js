// The benchmark's backend: a minimal node:http server answering every request with the same small
// JSON body over keep-alive. Usage: `node bench/backend.js [port]` (or PORT=...; default 0 = any).
// Prints the port it listens on (one line, digits only) to stdout once listening.
import { createServer } from 'node:http'

const body = Buffer.from(JSON.stringify({ status: 'ok', service: 'bench-backend', items: [1, 2, 3] }))
const headers = { 'content-type': 'application/json', 'content-length': String(body.length) }

const server = createServer((req, res) => {
  // Drain any request body before answering, so keep-alive connections stay usable.
  req.resume()
  req.on('end', () => {
    res.writeHead(200, headers)
    res.end(body)
  })
})
server.keepAliveTimeout = 65_000
server.headersTimeout = 66_000

const port = Number(process.argv[2] ?? process.env.PORT ?? 0)
server.listen(port, process.env.HOST ?? '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`)
})

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.closeAllConnections()
    server.close(() => process.exit(0))
  })
}
