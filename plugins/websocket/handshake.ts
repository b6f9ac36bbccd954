// The opening handshake on both hops (RFC 6455 §4): what a client's upgrade request must look like,
// what the backend is offered, and which of the backend's answer fields the client gets.
// Pure functions, no Fastify.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { UpstreamHeaders } from '../../lib/http-headers.js'

/** Whether a request asks to become a WebSocket (`Upgrade: websocket`, any case). */
export function isWebSocketUpgrade (request: IncomingMessage): boolean {
  const upgrade = request.headers.upgrade
  return typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket'
}

// RFC 6455 §4.1: the key is 16 random bytes, base64-encoded (24 characters ending in "==").
const KEY = /^[+/0-9A-Za-z]{22}==$/
// RFC 6455 §4.1 / RFC 9110 §5.6.2: each subprotocol is a token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Why a client's upgrade request cannot be tunnelled, or null when it can. */
export function handshakeProblem (request: IncomingMessage): string | null {
  if (request.method !== 'GET') return 'A WebSocket upgrade must be a GET request'
  if (!isWebSocketUpgrade(request)) return 'Only WebSocket upgrades (Upgrade: websocket) are supported'
  // RFC 3986 §3.5: a fragment is never part of a request target (a ws:// URL may not carry one).
  if (request.url?.includes('#') === true) return 'The request target may not contain a fragment (#)'
  const key = request.headers['sec-websocket-key']
  if (typeof key !== 'string' || !KEY.test(key.trim())) return 'Sec-WebSocket-Key is missing or invalid'
  if (request.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version must be 13'
  if (offeredProtocols(request.headers) === null) return 'Sec-WebSocket-Protocol must be a list of distinct tokens'
  return null
}

/** The subprotocols a client offers, in its order ([] for none), or null when the list is malformed. */
export function offeredProtocols (headers: IncomingHttpHeaders): string[] | null {
  const value = headers['sec-websocket-protocol']
  if (value === undefined) return []
  const list = String(value).split(',').map((p) => p.trim())
  if (list.some((p) => !TOKEN.test(p)) || new Set(list).size !== list.length) return null
  return list
}

/** Whether the client offers permessage-deflate (RFC 7692), the one extension the tunnel relays. */
export function offersDeflate (headers: IncomingHttpHeaders): boolean {
  const value = headers['sec-websocket-extensions']
  return value !== undefined && /(^|,)\s*permessage-deflate\s*(;|,|$)/i.test(String(value))
}

/** The handshake fields the `ws` client writes itself for the backend hop. */
const HANDSHAKE_FIELDS = ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol']

/** The headers for the backend: the proxy's policy (upstreamHeaders), minus this hop's handshake. */
export function backendHeaders (headers: UpstreamHeaders, host: string): UpstreamHeaders {
  for (const name of HANDSHAKE_FIELDS) delete headers[name]
  headers.host = host
  return headers
}

// Fields of the backend's 101 that belong to its hop (RFC 6455 §4.2.2) or are hop-by-hop.
const NOT_RELAYED = new Set([
  'connection', 'upgrade', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'content-length', 'trailer', 'te',
  'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions', 'sec-websocket-version'
])

/**
 * The lines added to the client's 101: the backend's own fields (cookies, custom headers) and the
 * gateway's (request id, rate-limit fields). `ws` writes the handshake fields itself.
 */
export function switchingHeaderLines (backend: IncomingHttpHeaders, own: Record<string, unknown>): string[] {
  const lines: string[] = []
  const add = (name: string, value: unknown): void => {
    if (value === undefined || NOT_RELAYED.has(name)) return
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`)
  }
  for (const name in backend) if (!(name in own)) add(name, backend[name])
  for (const name in own) add(name, own[name])
  return lines
}

/** Whether `ws` may send this close code (RFC 6455 §7.4: 1005, 1006 and 1015 never go on the wire). */
export function isSendableCode (code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
}
