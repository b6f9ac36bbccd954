// One open tunnel (docs/proxying.md#websockets): a client WebSocket and a backend WebSocket joined message by message.
//   relay     each message is sent on as it came (text or binary); a side whose peer cannot keep
//             up is paused (its socket stops being read) until the peer's queue drains, so a slow
//             reader slows the writer down through TCP instead of filling the gateway's memory
//   close     a close on one side closes the other with the same code; a message over the limit
//             closes both with 1009
//   idle      both sides are pinged; a side silent (not even a pong) for the idle time is dead and
//             the tunnel closes with 1001
import type { WebSocket, RawData } from 'ws'
import { isSendableCode } from './handshake.js'

/** Queued bytes above which the sending side is paused, and below which it resumes. */
const HIGH_WATER = 64 * 1024
const LOW_WATER = 16 * 1024
/** How long a closing side may take to answer the close frame before its socket is cut. */
const CLOSE_GRACE_MS = 5000

export type Side = 'client' | 'backend' | 'gateway'

export interface TunnelEnd {
  /** Close code the client saw (or 1006 when its connection dropped), who closed first. */
  code: number
  closedBy: Side
  bytesIn: number
  bytesOut: number
  durationMs: number
}

// ws error codes that carry a close status (ws › lib/receiver.js).
const ERROR_CODES: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007
}

export class Tunnel {
  readonly client: WebSocket
  readonly backend: WebSocket
  /**
   * Bytes of message payload relayed client → backend, and backend → client: counted once written
   * to the peer's socket, so a message dropped because the peer is closing is not counted.
   */
  bytesIn = 0
  bytesOut = 0
  readonly #startedAt = performance.now()
  readonly #idleMs: number
  readonly #onEnd: (end: TunnelEnd) => void
  /** Settles once both sides have closed and the end was reported. */
  readonly done: Promise<void>
  #resolveDone: () => void = () => {}
  #clientSeen = Date.now()
  #backendSeen = Date.now()
  #clientClosed = false
  #backendClosed = false
  #clientCode = 1006
  #closedBy: Side | null = null
  #timer: NodeJS.Timeout | null
  #cut: NodeJS.Timeout | null = null

  constructor (client: WebSocket, backend: WebSocket, idleMs: number, onEnd: (end: TunnelEnd) => void) {
    this.client = client
    this.backend = backend
    this.#idleMs = idleMs
    this.#onEnd = onEnd
    this.done = new Promise((resolve) => { this.#resolveDone = resolve })
    relay(client, backend, () => { this.#clientSeen = Date.now() }, (n) => { this.bytesIn += n })
    relay(backend, client, () => { this.#backendSeen = Date.now() }, (n) => { this.bytesOut += n })
    const seenClient = (): void => { this.#clientSeen = Date.now() }
    const seenBackend = (): void => { this.#backendSeen = Date.now() }
    client.on('pong', seenClient).on('ping', seenClient)
    backend.on('pong', seenBackend).on('ping', seenBackend)
    client.on('error', (err: Error & { code?: string }) => this.#failed('client', err))
    backend.on('error', (err: Error & { code?: string }) => this.#failed('backend', err))
    client.once('close', (code: number, reason: Buffer) => {
      this.#clientClosed = true
      this.#clientCode = code
      this.#closedBy ??= 'client'
      closeWith(backend, code === 1006 ? 1001 : code, reason)
      this.#ended()
    })
    backend.once('close', (code: number, reason: Buffer) => {
      this.#backendClosed = true
      this.#closedBy ??= 'backend'
      // A backend that vanished without a close frame is a bad gateway for the client (RFC 6455 §7.4.1: 1014).
      closeWith(client, code === 1006 ? 1014 : code, reason)
      this.#ended()
    })
    // Half the idle time between checks: a dead side is found between 1 and 1.5 idle times.
    this.#timer = setInterval(() => this.#checkIdle(), Math.max(50, Math.floor(idleMs / 2)))
    this.#timer.unref()
  }

  /** Closes both sides with `code` (shutdown, idle); sockets still open after `graceMs` are cut. */
  close (code: number, reason: string, graceMs = CLOSE_GRACE_MS): void {
    this.#closedBy ??= 'gateway'
    const why = Buffer.from(reason)
    closeWith(this.client, code, why)
    closeWith(this.backend, code, why)
    if (this.#cut === null) {
      this.#cut = setTimeout(() => this.terminate(), graceMs)
      this.#cut.unref()
    }
  }

  /** Cuts both connections at once (the end of a shutdown drain). */
  terminate (): void {
    this.#closedBy ??= 'gateway'
    this.client.terminate()
    this.backend.terminate()
  }

  #checkIdle (): void {
    const now = Date.now()
    if (now - this.#clientSeen >= this.#idleMs || now - this.#backendSeen >= this.#idleMs) {
      this.close(1001, 'idle timeout')
      return
    }
    ping(this.client)
    ping(this.backend)
  }

  /** A protocol error on one side (ws has already closed that side): the other side gets the same code. */
  #failed (side: 'client' | 'backend', err: Error & { code?: string }): void {
    const code = ERROR_CODES[err.code ?? ''] ?? 1002
    this.#closedBy ??= side
    closeWith(side === 'client' ? this.backend : this.client, code, Buffer.from(code === 1009 ? 'message too big' : 'protocol error'))
  }

  #ended (): void {
    if (!this.#clientClosed || !this.#backendClosed) return
    if (this.#timer !== null) clearInterval(this.#timer)
    if (this.#cut !== null) clearTimeout(this.#cut)
    this.#timer = null
    this.#onEnd({
      code: this.#clientCode,
      closedBy: this.#closedBy ?? 'gateway',
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      durationMs: performance.now() - this.#startedAt
    })
    this.#resolveDone()
  }
}

/**
 * Messages from `from` are sent on `to`; `from` is paused while `to` has too much queued. `seen`
 * is told of every message that arrives, `relayed` of the bytes of each one written to `to`.
 */
function relay (from: WebSocket, to: WebSocket, seen: () => void, relayed: (bytes: number) => void): void {
  let paused = false
  const drained = (): void => {
    if (paused && to.bufferedAmount <= LOW_WATER) {
      paused = false
      from.resume()
    }
  }
  from.on('message', (data: RawData, isBinary: boolean) => {
    const payload = data as Buffer
    seen()
    if (to.readyState !== to.OPEN) return
    // ws calls back with an error for a message it could not write (the peer's socket closed).
    to.send(payload, { binary: isBinary }, (err) => {
      if (err == null) relayed(payload.length)
      drained()
    })
    if (!paused && to.bufferedAmount > HIGH_WATER) {
      paused = true
      from.pause()
    }
  })
}

function ping (ws: WebSocket): void {
  if (ws.readyState === ws.OPEN) ws.ping()
}

/** Starts (or echoes) the closing handshake on `ws` with `code` when it may be sent. */
function closeWith (ws: WebSocket, code: number, reason: Buffer): void {
  if (ws.readyState !== ws.OPEN) return
  // A paused side would never read the peer's close frame.
  if (ws.isPaused) ws.resume()
  if (isSendableCode(code)) ws.close(code, reason.length <= 123 ? reason : undefined)
  else ws.close()
}
