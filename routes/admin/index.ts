// The admin scope, registered by the app with `{ prefix: '/admin' }`. Everything in it runs Basic
// auth first (plugins/admin-auth.ts, this scope only), gets `Cache-Control: no-store`, and accepts
// bodies of at most 64 KiB (docs/admin-api.md#api-keys: 413 above); an empty JSON body is no body
// (routes/admin/json-body.ts). zod validates and serialises every admin route;
// GET /admin/openapi.json is generated from the same schemas (routes/admin/openapi.ts) and
// GET /admin/docs shows it (routes/admin/docs.ts). A wrong
// method on an existing path is 405 with `Allow` (routes/admin/method-not-allowed.ts).
import type { FastifyPluginAsync } from 'fastify'
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import adminAuth from '../../plugins/admin-auth.js'
import apiKeyRoutes, { formatSchemaErrors } from './api-keys.js'
import cacheRoutes from './cache.js'
import circuitBreakerRoutes from './circuit-breakers.js'
import adminDocs from './docs.js'
import { jsonOrNothing } from './json-body.js'
import methodNotAllowed from './method-not-allowed.js'
import openApi from './openapi.js'
import serviceRoutes from './services.js'

export const ADMIN_BODY_LIMIT = 64 * 1024

const adminRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setSerializerCompiler(serializerCompiler)
  fastify.setSchemaErrorFormatter(formatSchemaErrors)
  fastify.addHook('onRoute', (route) => {
    route.bodyLimit = Math.min(route.bodyLimit ?? ADMIN_BODY_LIMIT, ADMIN_BODY_LIMIT)
  })
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, jsonOrNothing(fastify))

  // Before auth, so a 401 is not cached either.
  fastify.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })
  await fastify.register(adminAuth)
  // Both watch the routes registered after them (onRoute): register them before any route.
  await fastify.register(methodNotAllowed)
  await fastify.register(openApi)

  await fastify.register(apiKeyRoutes)
  await fastify.register(circuitBreakerRoutes)
  await fastify.register(serviceRoutes)
  await fastify.register(cacheRoutes)
  // GET /admin/docs: the page for this API, over the document above (routes/admin/docs.ts).
  await fastify.register(adminDocs)
}

export default adminRoutes
