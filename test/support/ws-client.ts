// A WebSocket client connected through the gateway, for the tunnel tests.
import WebSocket from 'ws'
import type { Teardownable } from './basics.js'

/** What a refused upgrade answered: the HTTP status, headers and body instead of a 101. */
export interface Refusal { status: number, headers: Record<string, string>, body: string }

export interface DialOptions extends WebSocket.ClientOptions {
  protocols?: string[]
  /** Terminate the client when this test ends. */
  teardown?: Teardownable
}

/** Opens a client; rejects with the HTTP answer (a Refusal-shaped error) when the upgrade is refused. */
export function dial (url: string, options: DialOptions = {}): Promise<WebSocket> {
  const { protocols = [], teardown, ...clientOptions } = options
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, clientOptions)
    teardown?.teardown(() => ws.terminate())
    ws.once('open', () => resolve(ws))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, headers: res.headers, body })))
    })
    ws.once('error', reject)
  })
}
