// The WebSocket benchmark's backend: a ws server on node:http that echoes every message (no
// compression). Usage: `node bench/ws-backend.js [port]` (or PORT=...; default 0 = any). Prints the
// port it listens on (one line, digits only) to stdout once listening; GET /health answers 200.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'

const server = createServer((req, res) => {
  res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' }).end('{}')
})
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
})

const port = Number(process.argv[2] ?? process.env.PORT ?? 0)
server.listen(port, process.env.HOST ?? '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`)
})

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    for (const ws of wss.clients) ws.terminate()
    server.closeAllConnections()
    server.close(() => process.exit(0))
  })
}
