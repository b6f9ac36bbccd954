// DELETE /admin/cache and DELETE /admin/cache/{service}[?prefix=/path]: purge the response cache
// (docs/caching.md#purging). Inside the admin scope (routes/admin/index.ts: Basic auth, no-store);
// this plugin only calls `fastify.responseCache`. On Redis the shared entries are deleted and every
// instance is told (pub/sub), so a fetch in progress anywhere stores nothing afterwards.
import type { FastifyPluginAsync } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { CacheUnavailable, ServiceNotFound } from '../../lib/errors.js'
import { ErrorEnvelope } from '../../lib/schemas/api-keys.js'
import { ServiceNameParams } from '../../lib/schemas/services.js'
import { formatSchemaErrors } from './api-keys.js'

const PurgeQuery = z.strictObject({
  prefix: z.string().max(2048).regex(/^\/[^\s?#]*$/, 'must be a path starting with / (no query string)').optional()
    .describe('Only the entries whose path is this one or below it (segment boundary)')
})

const PurgeResponse = z.object({
  status: z.literal('success'),
  message: z.string(),
  data: z.object({
    service: z.string().nullable().describe('The service purged, or null for every service'),
    prefix: z.string().nullable(),
    purged: z.number().int().describe('URLs dropped from the shared store or this instance (each URL may hold several variants)')
  })
})

const UNAVAILABLE = ErrorEnvelope.meta({ description: 'Redis is unreachable: the shared entries could not be purged' })

const cacheRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setSerializerCompiler(serializerCompiler)
  fastify.setSchemaErrorFormatter(formatSchemaErrors)
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const cache = fastify.responseCache
  async function purge (service: string | null, prefix: string | null): Promise<number> {
    try {
      return await cache.purge(service, prefix)
    } catch (err) {
      throw new CacheUnavailable({ cause: err })
    }
  }

  app.delete('/cache', {
    schema: { operationId: 'purgeCache', summary: 'Purge the response cache of every service, on every instance', response: { 200: PurgeResponse, 503: UNAVAILABLE } }
  }, async (request) => {
    const purged = await purge(null, null)
    request.log.info({ event: 'cache_purge', service: '*', purged }, 'response cache purged by admin')
    return { status: 'success' as const, message: `Response cache purged (${purged} URLs)`, data: { service: null, prefix: null, purged } }
  })

  app.delete('/cache/:name', {
    schema: {
      operationId: 'purgeServiceCache',
      summary: 'Purge the response cache of one service (optionally below a path prefix), on every instance',
      params: ServiceNameParams,
      querystring: PurgeQuery,
      response: { 200: PurgeResponse, 503: UNAVAILABLE, 404: ErrorEnvelope.meta({ description: 'No service has this name' }) }
    }
  }, async (request) => {
    const { name } = request.params
    if (fastify.services.get(name) === null) throw new ServiceNotFound(name)
    const prefix = request.query.prefix ?? null
    const purged = await purge(name, prefix)
    request.log.info({ event: 'cache_purge', service: name, prefix, purged }, 'response cache purged by admin')
    return { status: 'success' as const, message: `Response cache of ${name} purged (${purged} URLs)`, data: { service: name, prefix, purged } }
  })
}

export default cacheRoutes
