// A real WebSocket backend on port 0 (ws on node:http): echoes every message, records each
// handshake, and can be told to refuse upgrades with a status.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'

export interface WsBackendOptions {
  /** Subprotocol the backend picks among the offered ones (default: none). */
  protocol?: string
  /** permessage-deflate accepted when offered (default true). */
  deflate?: boolean
  /** Largest message the backend accepts (default ws's 100 MiB). */
  maxPayload?: number
  /** Wait this long before answering each upgrade (a slow backend). */
  handshakeDelayMs?: number
  /** What to do with each accepted connection (default: echo). */
  onConnection?: (ws: WebSocket, req: IncomingMessage) => void
}

export interface WsBackend {
  url: string
  port: number
  /** The upgrade requests received (headers as sent). */
  handshakes: IncomingMessage[]
  /** Connections accepted so far. */
  sockets: WebSocket[]
  /** Refuse later upgrades with this status and body (null to accept again). */
  refuse (status: number | null, body?: string): void
  close (): Promise<void>
}

export async function startWsBackend (options: WsBackendOptions = {}): Promise<WsBackend> {
  const handshakes: IncomingMessage[] = []
  const sockets: WebSocket[] = []
  let refusal: { status: number, body: string } | null = null
  const server: Server = createServer((req, res) => {
    res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' }).end('{}')
  })
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: options.deflate ?? true,
    maxPayload: options.maxPayload,
    handleProtocols: (offered) => options.protocol !== undefined && offered.has(options.protocol) ? options.protocol : false
  })
  server.on('upgrade', (req, socket, head) => {
    handshakes.push(req)
    if (refusal !== null) {
      socket.end(`HTTP/1.1 ${refusal.status} Refused\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(refusal.body)}\r\nX-Backend: refused\r\nConnection: close\r\n\r\n${refusal.body}`)
      return
    }
    const accept = (): void => wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws)
      if (options.onConnection !== undefined) options.onConnection(ws, req)
      else ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    })
    if (options.handshakeDelayMs === undefined) accept()
    else setTimeout(accept, options.handshakeDelayMs)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    handshakes,
    sockets,
    refuse (status, body = '') { refusal = status === null ? null : { status, body } },
    close: async () => {
      for (const ws of sockets) ws.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
