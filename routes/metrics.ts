// GET /metrics (docs/operations.md#metrics): Prometheus text, or prom-client's JSON when the client's Accept prefers
// application/json. While spans are exported, OpenMetrics too, for the trace ids the latency
// histogram carries as exemplars (docs/tracing.md#exemplars).
// Registered at the root, outside every service scope, so it is never rate limited.
import type { FastifyPluginAsync } from 'fastify'
import Negotiator from 'negotiator'
import { openMetrics, OPENMETRICS_TYPE, type MetricFamily } from '../lib/openmetrics.js'

/** What /metrics can answer, text first: it wins ties, a missing Accept and one matching neither. */
const FORMATS = ['text/plain', 'application/json'] as const
/** Prometheus asks for `application/openmetrics-text;version=1.0.0` first; the version must match. */
const OPENMETRICS = 'application/openmetrics-text; version=1.0.0'

const metricsRoute: FastifyPluginAsync = async (fastify) => {
  const { registry } = fastify.gatewayMetrics
  // Without exemplars OpenMetrics would add nothing: the Prometheus text stays the one format.
  const formats: string[] = fastify.config.tracing.exporting ? [...FORMATS, OPENMETRICS] : [...FORMATS]

  fastify.get('/metrics', async (request, reply) => {
    reply.header('cache-control', 'no-store').header('vary', 'Accept')
    // Media ranges with q-values, case-insensitive (RFC 9110 §12.5.1), by `negotiator`.
    const type = new Negotiator(request).mediaType(formats)
    if (type === 'application/json') {
      return reply.type('application/json; charset=utf-8').send(await registry.getMetricsAsJSON())
    }
    if (type === OPENMETRICS) {
      return reply.type(OPENMETRICS_TYPE).send(openMetrics(await registry.getMetricsAsJSON() as unknown as MetricFamily[]))
    }
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}

export default metricsRoute
