// WebSocket tunnels (docs/proxying.md#websockets). An `Upgrade: websocket` request goes through Fastify's router like
// any request, so the request id, the proxy's admit hook (service match, path check, API key from
// headers, one rate-limit token) and the breaker admission in its handler all run first; the proxy
// then hands the request here with its breaker permit, and:
//   1. the backend is dialled with the client's handshake (subprotocols, permessage-deflate offer)
//      and the proxy's header policy (credential stripped, X-Forwarded-*, request id);
//   2. a refusal (any status but 101) is relayed to the client as an HTTP response; no answer in
//      the service's timeoutMs is 504, a failed connection 502;
//   3. on 101 the client is accepted with the backend's choice of subprotocol and compression, and
//      the two are joined by a Tunnel (tunnel.ts) until either side closes.
// Before the dial the upgrade takes a tunnel place (tunnel-limits.ts: the service's maxTunnels,
// MAX_WEBSOCKET_TUNNELS) or is refused with 503; the HTTP concurrency slots it came with are given
// back as soon as the 101 is written, so an idle tunnel never holds one.
// Node emits 'upgrade' only for requests its shouldUpgradeCallback accepts: here, WebSocket ones,
// so `Connection: upgrade` with any other protocol stays an ordinary request.
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import promClient from '@platformatic/prom-client'
import { WebSocket, WebSocketServer } from 'ws'
import { BadGateway, BadRequest, GatewayTimeout, TunnelsFull } from '../../lib/errors.js'
import { noop } from '../../lib/noop.js'
import { CONNECT_FAILURES } from '../../lib/upstream-errors.js'
import { endAndClose } from '../../lib/end-and-close.js'
import { redactUrl } from '../../lib/url-redaction.js'
import type { BreakerPermit } from '../circuit-breakers.js'
import { routeLabel } from '../request-end.js'
import { clientHeaders, upstreamHeaders } from '../../lib/http-headers.js'
import type { ServiceRoute } from '../services/index.js'
import { backendHeaders, handshakeProblem, isWebSocketUpgrade, offeredProtocols, offersDeflate, switchingHeaderLines } from './handshake.js'
import { Tunnel, type TunnelEnd } from './tunnel.js'
import { TunnelLimits } from './tunnel-limits.js'

/** How an upgrade ended: the label set of gateway_websocket_upgrades_total. */
export const UPGRADE_OUTCOMES = ['accepted', 'rejected', 'shed', 'backend_refused', 'backend_failed', 'client_gone'] as const
type Outcome = typeof UPGRADE_OUTCOMES[number]

export interface WebSocketTunnels {
  /**
   * Tunnels the (admitted) upgrade request to one of the route's backends; settles `permit`. Calls
   * `handshakeDone` once the client's 101 is written (the HTTP concurrency slots end there; an
   * answer other than 101 is an ordinary response and ends them when it closes).
   */
  open (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, permit: BreakerPermit, path: string, handshakeDone: () => void): void
  /** Whether a request came in as an upgrade (so it must be tunnelled or answered, never proxied). */
  isUpgrade (request: FastifyRequest): boolean
  /** Records the service an upgrade matched, so its answer is counted under that service. */
  matched (request: FastifyRequest, route: ServiceRoute): void
  /** Tunnels open now. */
  readonly size: number
}

declare module 'fastify' {
  interface FastifyInstance {
    websocketTunnels: WebSocketTunnels
  }
}

const kSocket = Symbol('websocket.socket')
const kHead = Symbol('websocket.head')
const kProtocol = Symbol('websocket.protocol')
const kHeaders = Symbol('websocket.headers')
const kOutcome = Symbol('websocket.outcome')
const kRoute = Symbol('websocket.route')
/** How a dial's span ends when the client left first. */
const CLIENT_LEFT = Object.assign(new Error('client went away'), { code: 'GW_CLIENT_GONE' })
interface UpgradeRequest extends IncomingMessage {
  [kSocket]: Duplex
  [kHead]: Buffer
  /** The subprotocol the backend chose ('' for none), offered to the client's handshake. */
  [kProtocol]: string
  /** Extra lines for the client's 101. */
  [kHeaders]: string[]
  [kOutcome]: Outcome | undefined
  /** The service the upgrade matched (set by the proxy's admit), for the outcome counter. */
  [kRoute]: ServiceRoute | undefined
}

async function websocket (app: FastifyInstance): Promise<void> {
  const { config, gatewayMetrics } = app
  const registers = [gatewayMetrics.registry]
  // The open tunnels, each with the service it belongs to (for the gauge and the drain).
  const tunnels = new Map<Tunnel, string>()
  const limits = new TunnelLimits(config.shedding.maxWebsocketTunnels)
  // Both series follow the live service table, read at every scrape: a WebSocket service added at
  // run time appears at 0, a removed one disappears, and a tunnel or an upgrade that ends after its
  // service was removed cannot bring the series back.
  const websocketServices = (): Set<string> =>
    new Set(app.serviceTables.current.routes.filter((r) => r.service.websocket).map((r) => r.name))
  new promClient.Gauge({ // eslint-disable-line no-new -- read only through its collect()
    name: 'gateway_websocket_tunnels_open',
    help: 'WebSocket tunnels open now, per service',
    labelNames: ['service'],
    registers,
    collect () {
      const open = new Map<string, number>()
      for (const name of tunnels.values()) open.set(name, (open.get(name) ?? 0) + 1)
      this.reset()
      for (const name of websocketServices()) this.set({ service: name }, open.get(name) ?? 0)
    }
  })
  const counted = new Set<string>()
  const upgrades = new promClient.Counter({
    name: 'gateway_websocket_upgrades_total',
    help: 'WebSocket upgrade requests by service and outcome',
    labelNames: ['service', 'outcome'],
    registers,
    collect () {
      const live = websocketServices()
      for (const name of counted) {
        if (live.has(name)) continue
        for (const outcome of UPGRADE_OUTCOMES) this.remove({ service: name, outcome })
        counted.delete(name)
      }
      for (const name of live) {
        if (counted.has(name)) continue
        counted.add(name)
        for (const outcome of UPGRADE_OUTCOMES) this.inc({ service: name, outcome }, 0)
      }
    }
  })

  // One server per (message limit, compression) pair: ws reads both from the server's options.
  const servers = new Map<string, WebSocketServer>()
  function serverFor (maxPayload: number, deflate: boolean): WebSocketServer {
    const id = `${maxPayload}/${deflate ? 1 : 0}`
    let wss = servers.get(id)
    if (wss === undefined) {
      wss = new WebSocketServer({
        noServer: true,
        clientTracking: false,
        maxPayload,
        perMessageDeflate: deflate,
        // The client gets the subprotocol the backend chose (it was one of the client's offers).
        handleProtocols: (_offered, req) => (req as UpgradeRequest)[kProtocol] || false
      })
      wss.on('headers', (lines: string[], req: IncomingMessage) => { lines.push(...(req as UpgradeRequest)[kHeaders]) })
      servers.set(id, wss)
    }
    return wss
  }

  let draining = false

  function onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const r = req as UpgradeRequest
    r[kSocket] = socket
    r[kHead] = head
    r[kProtocol] = ''
    r[kHeaders] = []
    r[kOutcome] = undefined
    r[kRoute] = undefined
    // Until ws takes the socket over, a reset must not crash the process; 'close' follows it.
    socket.on('error', noop)
    // An answer other than 101 goes out on this response; the connection carries nothing after it,
    // and is closed, not half-closed: the response's 'close' (which gives back the request's
    // concurrency slots) comes only with the socket's. Such an answer (401, 429, 503, 400, a
    // relayed refusal) is counted here, when it is written, so ordinary HTTP requests carry no
    // WebSocket hook at all.
    const res = new ServerResponse(req)
    res.shouldKeepAlive = false
    res.assignSocket(socket as never)
    let answered = false
    const countAnswer = (): void => {
      if (answered) return
      answered = true
      const route = r[kRoute]
      if (route !== undefined) count(route.name, r[kOutcome] ?? 'rejected')
    }
    res.once('finish', () => {
      countAnswer()
      endAndClose(socket)
    })
    res.once('error', countAnswer)
    app.routing(req, res)
  }
  // Node >= 24.9 (older versions send every upgrade here; handshakeProblem then answers 400).
  ;(app.server as { shouldUpgradeCallback?: (req: IncomingMessage) => boolean }).shouldUpgradeCallback = isWebSocketUpgrade
  app.server.on('upgrade', onUpgrade)

  function count (service: string, outcome: Outcome): void {
    counted.add(service)
    upgrades.inc({ service, outcome })
  }

  function open (request: FastifyRequest, reply: FastifyReply, route: ServiceRoute, permit: BreakerPermit, path: string, handshakeDone: () => void): void {
    const raw = request.raw as UpgradeRequest
    const socket = raw[kSocket]
    const problem = handshakeProblem(raw)
    if (problem !== null || socket === undefined) {
      permit.release()
      reply.send(new BadRequest(problem ?? 'Send WebSocket upgrades over HTTP/1.1'))
      return
    }
    if (socket.destroyed) {
      permit.release()
      aborted(request, route)
      return
    }
    const service = route.service
    // Refused before the backend is dialled; otherwise every path below gives the place back
    // (`leave`) or hands it to the tunnel.
    const leave = limits.take(route.name, service.maxTunnels)
    if (leave === null) {
      permit.release()
      raw[kOutcome] = 'shed'
      app.requestEnds.mark(request, 'shed')
      reply.header('retry-after', '1').header('x-gateway-overload', 'tunnels')
      reply.send(new TunnelsFull())
      return
    }
    const index = route.balancer.pick(route.usable)
    const target = route.backends[index]
    const url = (target.origin.startsWith('https:') ? 'wss:' : 'ws:') + target.origin.slice(target.origin.indexOf('//')) + path
    let backend: WebSocket
    // The dial is the upgrade's one upstream attempt: `traceparent` names its span (docs/tracing.md).
    const headers = upstreamHeaders(request, route.requestHeaders)
    const attempt = app.tracing.attemptStarted(request, 0, target, headers)
    try {
      backend = new WebSocket(url, offeredProtocols(raw.headers) ?? [], {
        headers: backendHeaders(headers, target.host) as Record<string, string>,
        perMessageDeflate: offersDeflate(raw.headers),
        maxPayload: service.wsMaxMessageBytes,
        handshakeTimeout: service.timeoutMs,
        followRedirects: false
      })
    } catch (err) {
      // ws validates the URL and options synchronously; the request passed every check already.
      leave()
      permit.release()
      app.tracing.attemptEnded(attempt, 0, err as Error)
      request.log.warn({ err, event: 'websocket_dial_failed', service: route.name }, 'could not start the backend upgrade')
      reply.send(new BadGateway())
      return
    }
    let settled = false
    const settle = (): boolean => {
      if (settled) return false
      settled = true
      socket.off('close', clientLeft)
      return true
    }
    const clientLeft = (): void => {
      if (!settle()) return
      leave()
      permit.release()
      app.tracing.attemptEnded(attempt, 0, CLIENT_LEFT)
      backend.terminate()
      aborted(request, route)
    }
    socket.once('close', clientLeft)
    gatewayMetrics.backendRequest(route.name)

    backend.once('unexpected-response', (backendReq, res) => {
      if (!settle()) return
      leave()
      const status = res.statusCode ?? 502
      app.tracing.attemptEnded(attempt, status, null)
      if (status >= 500) {
        gatewayMetrics.backendError(route.name)
        permit.failure()
      } else {
        permit.success()
      }
      raw[kOutcome] = 'backend_refused'
      res.once('end', () => backendReq.destroy())
      const prefix = service.stripPrefix && service.prefix !== '/' ? service.prefix : null
      reply.code(status).headers(clientHeaders(res.headers, reply, prefix, route.responseHeaders)).send(res)
    })
    backend.once('upgrade', (res) => {
      raw[kHeaders] = switchingHeaderLines(res.headers, reply.getHeaders())
    })
    // Not once: ws may report a second error (a handshake timer) while a refusal is relayed.
    backend.on('error', (err: Error & { code?: string }) => {
      if (!settle()) return
      leave()
      app.tracing.attemptEnded(attempt, 0, err)
      gatewayMetrics.backendError(route.name)
      permit.failure()
      raw[kOutcome] = 'backend_failed'
      const timedOut = err.message.includes('handshake has timed out')
      if (CONNECT_FAILURES.has(err.code ?? '')) route.health.markFailed(index, 'connection failed')
      request.log.warn({ event: timedOut ? 'upstream_timeout' : 'upstream_error', service: route.name, code: err.code }, 'websocket upgrade to the backend failed')
      reply.send(timedOut ? new GatewayTimeout() : new BadGateway())
    })
    backend.once('open', () => {
      if (!settle()) return
      app.tracing.attemptEnded(attempt, 101, null)
      permit.success()
      reply.hijack()
      raw[kProtocol] = backend.protocol
      const wss = serverFor(service.wsMaxMessageBytes, backend.extensions.includes('permessage-deflate'))
      let accepted = false
      wss.handleUpgrade(raw, socket, raw[kHead], (client) => {
        accepted = true
        count(route.name, 'accepted')
        app.requestEnds.upgraded(request)
        start(request, route, client, backend, leave)
      })
      // The handshake is over either way (handleUpgrade writes the 101 synchronously).
      handshakeDone()
      // ws refuses a socket that is no longer open (the client left as the backend answered).
      if (!accepted) {
        leave()
        backend.close(1001, 'client went away')
        aborted(request, route)
      }
    })
  }

  /** The client left before its upgrade was answered. */
  function aborted (request: FastifyRequest, route: ServiceRoute): void {
    count(route.name, 'client_gone')
    app.requestEnds.clientGone(request)
  }

  function start (request: FastifyRequest, route: ServiceRoute, client: WebSocket, backend: WebSocket, leave: () => void): void {
    const tunnel = new Tunnel(client, backend, route.service.wsIdleTimeoutMs, (end: TunnelEnd) => {
      tunnels.delete(tunnel)
      leave()
      request.log.info({
        method: request.method,
        route: routeLabel(request),
        url: redactUrl(request.url),
        status: 101,
        duration_ms: Math.round(end.durationMs * 1000) / 1000,
        ip: request.ip,
        consumer: request.consumer?.id ?? null,
        trace_id: request.traceId || null,
        websocket: true,
        bytes_in: end.bytesIn,
        bytes_out: end.bytesOut,
        close_code: end.code,
        closed_by: end.closedBy
      }, 'websocket closed')
    })
    tunnels.set(tunnel, route.name)
    if (draining) goAway(tunnel)
  }

  app.decorate('websocketTunnels', { open, isUpgrade, matched, get size () { return tunnels.size } })

  // The drain starts (app.close()): every tunnel is told the gateway is going away (1001) and is
  // cut if still open at SHUTDOWN_TIMEOUT_MS.
  const goAway = (tunnel: Tunnel): void => tunnel.close(1001, 'gateway shutting down', config.shutdownTimeoutMs)
  app.addHook('preClose', async () => {
    draining = true
    for (const t of tunnels.keys()) goAway(t)
  })
  // The listener has closed (client sockets included): wait for the backend sides to finish their
  // closing handshakes, so every tunnel's log line is written before the process exits.
  app.addHook('onClose', async () => {
    await Promise.all([...tunnels.keys()].map((t) => t.done))
    for (const wss of servers.values()) wss.close()
  })
}

function isUpgrade (request: FastifyRequest): boolean {
  return (request.raw as Partial<UpgradeRequest>)[kSocket] !== undefined
}

function matched (request: FastifyRequest, route: ServiceRoute): void {
  (request.raw as UpgradeRequest)[kRoute] = route
}

export default fp(websocket, {
  name: 'websocket',
  fastify: '5.x',
  dependencies: ['config', 'lifecycle', 'gateway-metrics', 'request-end', 'tracing', 'access-log', 'services']
})
