// GET /metrics (docs/operations.md#metrics): Prometheus text, or prom-client's JSON when the client's Accept prefers
// application/json. Registered at the root, outside every service scope, so it is never rate limited.
import type { FastifyPluginAsync } from 'fastify'
import Negotiator from 'negotiator'

/** What /metrics can answer, text first: it wins ties, a missing Accept and one matching neither. */
const FORMATS = ['text/plain', 'application/json'] as const

const metricsRoute: FastifyPluginAsync = async (fastify) => {
  const { registry } = fastify.gatewayMetrics

  fastify.get('/metrics', async (request, reply) => {
    reply.header('cache-control', 'no-store').header('vary', 'Accept')
    // Media ranges with q-values, case-insensitive (RFC 9110 §12.5.1), by `negotiator`.
    if (new Negotiator(request).mediaType(FORMATS) === 'application/json') {
      return reply.type('application/json; charset=utf-8').send(await registry.getMetricsAsJSON())
    }
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}

export default metricsRoute
