// The admin plane on its own listener (docs/configuration.md#load-shedding): with ADMIN_PORT set, /admin/* and /metrics are
// served only on ADMIN_HOST:ADMIN_PORT and the public listener answers 404 for them; /health and
// /ready answer on both; nothing else (the proxy, /info, /services/health) is served on the admin one.
//
// One app, one store, one metrics registry: the second listener is a plain node:http server whose
// requests go into this app's router (`app.routing`), exactly as the public server's do. Which
// listener a request came in on is a route constraint (`listener`), derived from a mark on the
// socket, so the router itself keeps each route to its listener: no hook on the hot path, and a
// public request for /admin/* is refused before Basic auth is even asked for.
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { clientErrorHandler, refuseConnect } from './error-handler.js'

export interface AdminListener {
  readonly server: Server
  /** Binds ADMIN_HOST:ADMIN_PORT; resolves with the URL it listens on (called by src/server.ts). */
  listen (): Promise<string>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The admin plane's own listener, or null when it shares the public one. */
    adminListener: AdminListener | null
  }
}

const kAdminSocket = Symbol('admin-listener.socket')
type MarkedSocket = Socket & { [kAdminSocket]?: true }

/** Where a route is served once the admin plane has its own listener. */
export function listenerFor (url: string): 'admin' | 'public' | 'both' {
  if (url === '/metrics' || url === '/admin' || url.startsWith('/admin/')) return 'admin'
  if (url === '/health' || url === '/ready') return 'both'
  return 'public'
}

export default fp(async function adminListener (app) {
  const where = app.config.adminListener
  if (where === null) {
    app.decorate('adminListener', null)
    return
  }
  app.addConstraintStrategy({
    name: 'listener',
    // The constraint takes two values; a route without it matches on both listeners.
    storage () {
      const stores: Record<string, unknown> = {}
      return {
        get: (value: string) => (stores[value] ?? null) as never,
        set: (value: string, store: unknown) => { stores[value] = store }
      }
    },
    deriveConstraint: (req: { socket?: MarkedSocket }) => req.socket?.[kAdminSocket] === true ? 'admin' : 'public'
  })
  app.addHook('onRoute', (route: RouteOptions) => {
    const listener = listenerFor(route.url)
    if (listener !== 'both') route.constraints = { ...route.constraints, listener }
  })

  const { server: limits } = app.config
  const server = createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1000,
    maxHeaderSize: 16 * 1024,
    requireHostHeader: true
  })
  // The same parser-level protections as the public listener (src/app.ts).
  server.maxHeadersCount = 0
  server.on('connection', (socket: MarkedSocket) => { socket[kAdminSocket] = true })
  server.on('request', app.routing)
  server.on('clientError', clientErrorHandler.bind(app))
  server.on('connect', (_req, socket) => refuseConnect(socket as Socket))

  app.decorate('adminListener', {
    server,
    async listen () {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(where.port, where.host, () => {
          server.off('error', reject)
          resolve()
        })
      })
      const { address, port } = server.address() as AddressInfo
      return `http://${address.includes(':') ? `[${address}]` : address}:${port}`
    }
  })
  // Stop accepting with the public listener, let admin requests in progress finish.
  app.addHook('onClose', async () => {
    if (!server.listening) return
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeIdleConnections()
    await closed
  })
}, { name: 'admin-listener', fastify: '5.x', dependencies: ['config', 'error-handler'] })
