// GET /admin/circuit-breakers, POST /admin/circuit-breakers/{name}/reset and
// POST /admin/circuit-breakers/reset (docs/proxying.md#retries-and-circuit-breakers, the seed's JSON). Registered inside the admin scope
// (routes/admin/index.ts), which adds Basic auth; this plugin only reads `fastify.breakers`. zod
// validates the name and shapes the responses (and documents them in /admin/openapi.json).
import type { FastifyPluginAsync } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { BreakerNotFound } from '../../lib/errors.js'
import { ErrorEnvelope } from '../../lib/schemas/api-keys.js'
import { formatSchemaErrors } from './api-keys.js'

export const BreakerNameParams = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -')
})

export const BreakerSnapshotSchema = z.object({
  name: z.string(),
  state: z.enum(['closed', 'open', 'half-open']),
  failures: z.number().int(),
  consecutive_successes: z.number().int(),
  last_failure: z.string().optional()
})

const ListResponse = z.object({ status: z.literal('success'), data: z.array(BreakerSnapshotSchema) })
const MessageResponse = z.object({ status: z.literal('success'), message: z.string() })

const circuitBreakerRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setSerializerCompiler(serializerCompiler)
  fastify.setSchemaErrorFormatter(formatSchemaErrors)
  const app = fastify.withTypeProvider<ZodTypeProvider>()

  app.get('/circuit-breakers', {
    schema: { operationId: 'listCircuitBreakers', summary: 'List circuit breakers (one per service)', response: { 200: ListResponse } }
  }, async () => ({ status: 'success' as const, data: fastify.breakers.list() }))

  app.post('/circuit-breakers/reset', {
    schema: { operationId: 'resetAllCircuitBreakers', summary: 'Reset every circuit breaker to closed', response: { 200: MessageResponse } }
  }, async (request) => {
    fastify.breakers.resetAll()
    request.log.info({ event: 'breaker_reset', service: '*' }, 'all circuit breakers reset by admin')
    return { status: 'success' as const, message: 'All circuit breakers reset' }
  })

  app.post('/circuit-breakers/:name/reset', {
    schema: {
      operationId: 'resetCircuitBreaker',
      summary: 'Reset one circuit breaker to closed',
      params: BreakerNameParams,
      response: { 200: MessageResponse, 404: ErrorEnvelope.meta({ description: 'No service has this name' }) }
    }
  }, async (request) => {
    const { name } = request.params
    if (!fastify.breakers.reset(name)) throw new BreakerNotFound(name)
    request.log.info({ event: 'breaker_reset', service: name }, 'circuit breaker reset by admin')
    return { status: 'success' as const, message: `Circuit breaker ${name} reset` }
  })
}

export default circuitBreakerRoutes
