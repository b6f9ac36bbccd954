// buildApp(config): the whole gateway as one ordered list of registrations, in the order a request
// travels (docs/architecture.md follows one). It never listens: src/run.ts does, tests use
// inject() or listen on port 0.
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from '../lib/config.js'
import { logDestination } from '../lib/log-destination.js'
import { lazyRequestLogger } from '../lib/request-logger.js'
import { requestIdFor } from '../plugins/request-context.js'
import requestContext from '../plugins/request-context.js'
import errorHandler, { clientErrorHandler, refuseConnect, routerError } from '../plugins/error-handler.js'
import configPlugin from '../plugins/config.js'
import lifecycle from '../plugins/lifecycle.js'
import adminListener from '../plugins/admin-listener.js'
import cors from '../plugins/cors.js'
import requestEnd from '../plugins/request-end.js'
import gatewayMetrics from '../plugins/gateway-metrics.js'
import accessLog, { requestSerializer } from '../plugins/access-log.js'
import tracing from '../plugins/tracing/index.js'
import store from '../plugins/store/index.js'
import apiKeys from '../plugins/api-keys.js'
import jwt from '../plugins/jwt/index.js'
import rateLimit from '../plugins/rate-limit.js'
import circuitBreakers from '../plugins/circuit-breakers.js'
import healthChecks from '../plugins/health-checks.js'
import ipRules from '../plugins/ip-rules.js'
import quotas from '../plugins/quotas.js'
import services from '../plugins/services/index.js'
import responseCache from '../plugins/cache/index.js'
import healthRoutes from '../routes/health.js'
import infoRoutes from '../routes/info.js'
import metricsRoutes from '../routes/metrics.js'
import adminRoutes from '../routes/admin/index.js'
import websocket from '../plugins/websocket/index.js'
import proxy from '../plugins/proxy/index.js'

export interface BuildOptions {
  /** A pino logger config or instance; defaults to JSON logs at config.logLevel. */
  logger?: FastifyServerOptions['logger']
  loggerInstance?: FastifyServerOptions['loggerInstance']
}

/** Paths pino must never print: credentials and cookies (docs/operations.md). */
export const REDACT = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  'res.headers["set-cookie"]'
]

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const logging: FastifyServerOptions = options.loggerInstance !== undefined
    ? { loggerInstance: options.loggerInstance }
    : {
        logger: options.logger ?? {
          level: config.logLevel,
          redact: { paths: REDACT, censor: '[REDACTED]' },
          // Fastify's default would log req.url with its query string, keys included (SC-01).
          serializers: { req: requestSerializer },
          // One access line per request: written asynchronously (lines of one tick share a
          // write), flushed on exit (lib/log-destination.ts).
          stream: logDestination()
        }
      }
  const app = Fastify({
    ...logging,
    // One access line per request comes from plugins/access-log.ts instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // A hop count is valid at run time (proxy-addr) though Fastify's types omit it.
    trustProxy: config.trustProxy as boolean | string[],
    genReqId: requestIdFor,
    // A request's pino child is made only if it logs more than its access line (lib/request-logger.ts).
    childLoggerFactory: lazyRequestLogger,
    requestIdHeader: false,
    bodyLimit: config.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Node keeps slow or idle clients forever by default (docs/reliability.md, BI-10).
    connectionTimeout: 0,
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    requestTimeout: config.server.requestTimeoutMs,
    http: {
      headersTimeout: config.server.headersTimeoutMs,
      requestTimeout: config.server.requestTimeoutMs,
      keepAliveTimeout: config.server.keepAliveTimeoutMs,
      connectionsCheckingInterval: 1000,
      maxHeaderSize: 16 * 1024,
      requireHostHeader: true
    },
    clientErrorHandler,
    frameworkErrors: routerError,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { maxParamLength: 256 }
  })
  // Every header line is kept so the framing guard can count them; Node's default of 2000 drops
  // the rest silently, Content-Length included (docs/reliability.md, BI-07).
  app.server.maxHeadersCount = 0
  // With a listener here Node no longer answers `Expect: 100-continue` by itself: the gateway
  // sends 100 only once the request passed authentication and rate limiting (request-context).
  app.server.on('checkContinue', (req, res) => app.server.emit('request', req, res))
  app.server.on('connect', (_req, socket) => refuseConnect(socket as never))
  // Connections over the cap are closed on accept; existing ones keep being served (docs/configuration.md#load-shedding).
  app.server.maxConnections = config.shedding.maxConnections

  await app.register(configPlugin, { config })
  await app.register(lifecycle)
  await app.register(errorHandler)
  // Before any route: it keeps /admin/* and /metrics to their own listener when ADMIN_PORT is set.
  await app.register(adminListener)
  await app.register(requestContext)
  await app.register(cors)
  await app.register(requestEnd)
  await app.register(gatewayMetrics)
  // Trace context for every request, spans when exporting (docs/tracing.md): before the access log reads `trace_id`.
  await app.register(tracing)
  await app.register(accessLog)
  await app.register(store)
  await app.register(apiKeys)
  await app.register(jwt)
  await app.register(rateLimit)
  // Traffic policies (docs/policies.md): the proxy's admit runs IP rules before the key, the
  // quota after the rate limit.
  await app.register(ipRules)
  await app.register(quotas)
  await app.register(circuitBreakers)
  await app.register(healthChecks)
  await app.register(services)
  // A preHandler: after the proxy's admit (key, scopes, rate limit), before its handler takes a
  // concurrency slot or a breaker permit (docs/caching.md).
  await app.register(responseCache)

  await app.register(healthRoutes)
  await app.register(infoRoutes)
  await app.register(metricsRoutes)
  await app.register(adminRoutes, { prefix: '/admin' })
  await app.register(websocket)
  await app.register(proxy)
  return app
}
