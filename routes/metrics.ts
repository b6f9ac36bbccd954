// GET /metrics (SPEC §11): Prometheus text, or prom-client's JSON with `Accept: application/json`.
// Registered at the root, outside every service scope, so it is never rate limited.
import type { FastifyPluginAsync } from 'fastify'

const metricsRoute: FastifyPluginAsync = async (fastify) => {
  const { registry } = fastify.gatewayMetrics

  fastify.get('/metrics', async (request, reply) => {
    reply.header('cache-control', 'no-store')
    // Prometheus asks for openmetrics or text/plain, never JSON, so a plain substring test is enough.
    if (request.headers.accept?.includes('application/json') === true) {
      return reply.type('application/json; charset=utf-8').send(await registry.getMetricsAsJSON())
    }
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}

export default metricsRoute
