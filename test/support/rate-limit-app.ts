// A small Fastify app around the rate-limit plugin for the rate-limit tests: the error
// handler, a counting stand-in for gateway-metrics, a store (given, or the real store plugin),
// a stand-in for api-keys (header `x-test-key` picks a consumer), and one scope per service with
// the rate-limit hook and a catch-all route.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { loadConfig, type ServiceConfig } from '../../lib/config.js'
import errorHandler from '../../plugins/error-handler.js'
import rateLimit, { type ConsumerLimits, type RateLimitOptions } from '../../plugins/rate-limit.js'
import storePlugin from '../../plugins/store/index.js'
import type { BucketStore, Store } from '../../plugins/store/types.js'
import type { Teardownable } from './basics.js'
import configPlugin from '../../plugins/config.js'

export interface MetricCalls {
  rateLimited: number
  failOpen: number
  storeErrors: string[]
}

export interface TestAppOptions {
  env?: Record<string, string>
  /** Decorated as a store of this kind; omitted: the real store plugin from `env`. */
  buckets?: BucketStore
  kind?: 'embedded' | 'redis'
  trustProxy?: FastifyServerOptions['trustProxy']
  services?: Array<Partial<ServiceConfig> & { name: string, prefix: string }>
  consumers?: Record<string, ConsumerLimits>
  plugin?: RateLimitOptions
  logger?: FastifyServerOptions['logger']
}

export async function rateLimitApp (t: Teardownable, opts: TestAppOptions = {}): Promise<{ app: FastifyInstance, metrics: MetricCalls }> {
  const config = loadConfig({ ADMIN_PASSWORD: 'x', LOG_LEVEL: 'silent', ...opts.env }, { dotenv: false })
  const app = Fastify({ trustProxy: opts.trustProxy ?? false, logger: opts.logger ?? false })
  t.teardown(() => app.close())
  await app.register(configPlugin, { config })
  await app.register(errorHandler)

  const metrics: MetricCalls = { rateLimited: 0, failOpen: 0, storeErrors: [] }
  await app.register(fp(async (f) => {
    f.decorate('gatewayMetrics', {
      rateLimited () { metrics.rateLimited++ },
      rateLimitFailOpen () { metrics.failOpen++ },
      storeError (operation: string) { metrics.storeErrors.push(operation) }
    } as never)
  }, { name: 'gateway-metrics' }))

  const buckets = opts.buckets
  if (buckets === undefined) {
    await app.register(storePlugin)
  } else {
    await app.register(fp(async (f) => {
      f.decorate('store', { kind: opts.kind ?? 'embedded', buckets } as unknown as Store)
    }, { name: 'store' }))
  }

  const consumers = opts.consumers ?? {}
  await app.register(fp(async (f) => {
    f.decorateRequest('consumer', null)
    f.addHook('onRequest', async (request) => {
      const id = request.headers['x-test-key']
      if (typeof id === 'string') (request as { consumer: ConsumerLimits | null }).consumer = consumers[id] ?? null
    })
  }, { name: 'api-keys' }))

  await app.register(rateLimit, opts.plugin ?? {})

  app.get('/health', async () => ({ status: 'ok' }))
  const base = config.services[0]
  const services = (opts.services ?? [{ name: 'svc', prefix: '/svc' }]).map((s) => ({ ...base, rateLimit: null, ...s }))
  for (const service of services) {
    await app.register(async (scope) => {
      scope.addHook('onRequest', app.rateLimiter.hookFor(service))
      scope.all(`${service.prefix}/*`, async (request) => ({ service: service.name, ip: request.ip }))
    })
  }
  await app.ready()
  return { app, metrics }
}
