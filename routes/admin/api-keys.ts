// The admin API-key endpoints (docs/admin-api.md#api-keys table, the seed's JSON). Registered inside the admin scope
// (routes/admin/index.ts), which adds Basic auth, `Cache-Control: no-store` and the 64 KiB body
// limit. zod validates params and bodies (strict, no coercion) and shapes every 2xx response, so
// a field that is not in ApiKeyRecordSchema — the hash — cannot be serialised.
import type { FastifyPluginAsync, FastifySchemaValidationError } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { ApiKeyNotFound, NoQuota, StoreUnavailable, ValidationFailed } from '../../lib/errors.js'
import type { StoreOperation } from '../../plugins/gateway-metrics.js'
import { storeDownResponse } from './openapi.js'
import {
  ApiKeyIdParams, CreatedResponse, ErrorEnvelope, ListResponse, MessageResponse, OneResponse, UsageResponse, createApiKeyBody
} from '../../lib/schemas/api-keys.js'

export const CREATED_MESSAGE = "API key created. Save the raw_key - it won't be shown again!"

/** "name: must be …" — zod issues as one 400 message naming each field (docs/admin-api.md#api-keys). */
export function formatSchemaErrors (errors: FastifySchemaValidationError[], dataVar: string): Error {
  const text = errors.slice(0, 5).map((e) => {
    const field = e.instancePath.replace(/^\//, '').replaceAll('/', '.')
    return `${field === '' ? dataVar : field}: ${e.message ?? 'is invalid'}`
  }).join('; ')
  return new ValidationFailed(text)
}

/** Statuses these routes produce themselves (the admin scope documents 400/401/413/415/429). */
const STORE_DOWN = storeDownResponse('key')
const UNKNOWN_ID = ErrorEnvelope.meta({ description: 'No API key has this id' })
const NO_USAGE = ErrorEnvelope.meta({ description: 'No API key has this id, or the key has no quota' })
const CREATED = CreatedResponse.meta({
  description: 'Created; the raw key is shown only in this response',
  headers: { location: { type: 'string', description: 'The new key: /admin/apikeys/{id}' } }
})

const apiKeyRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setSerializerCompiler(serializerCompiler)
  fastify.setSchemaErrorFormatter(formatSchemaErrors)
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const CreateBody = createApiKeyBody(() => fastify.serviceTables.current.routes.map((r) => r.name))

  /** A store failure is a 503 the client may retry (the error handler adds Retry-After); a raw key is only shown once it is stored. */
  async function storeCall<T> (operation: StoreOperation, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      fastify.gatewayMetrics.storeError(operation)
      fastify.log.error({ err, event: 'admin_store_error', operation }, 'admin operation failed: key store unavailable')
      throw new StoreUnavailable()
    }
  }

  app.post('/apikeys', {
    schema: { operationId: 'createApiKey', summary: 'Create an API key', body: CreateBody, response: { 201: CREATED, 503: STORE_DOWN } }
  }, async (request, reply) => {
    const { record, rawKey } = await storeCall('keys.create', () => fastify.apiKeys.create(request.body))
    request.log.info({ event: 'api_key_created', keyId: record.id, name: record.name }, 'API key created')
    reply.code(201).header('cache-control', 'no-store').header('location', `/admin/apikeys/${record.id}`)
    return { status: 'success' as const, message: CREATED_MESSAGE, data: { api_key: record, raw_key: rawKey } }
  })

  app.get('/apikeys', {
    schema: { operationId: 'listApiKeys', summary: 'List API keys', response: { 200: ListResponse, 503: STORE_DOWN } }
  }, async () => {
    const data = await storeCall('keys.list', () => fastify.apiKeys.list())
    return { status: 'success' as const, data }
  })

  app.get('/apikeys/:id', {
    schema: { operationId: 'getApiKey', summary: 'Get one API key', params: ApiKeyIdParams, response: { 200: OneResponse, 404: UNKNOWN_ID, 503: STORE_DOWN } }
  }, async (request) => {
    const data = await storeCall('keys.get', () => fastify.apiKeys.get(request.params.id))
    if (data === null) throw new ApiKeyNotFound(request.params.id)
    return { status: 'success' as const, data }
  })

  app.get('/apikeys/:id/usage', {
    schema: {
      operationId: 'getApiKeyUsage',
      summary: 'Quota usage of an API key in the current period (docs/policies.md#quotas)',
      params: ApiKeyIdParams,
      response: { 200: UsageResponse, 404: NO_USAGE, 503: STORE_DOWN }
    }
  }, async (request) => {
    const { id } = request.params
    const key = await storeCall('keys.get', () => fastify.apiKeys.get(id))
    if (key === null) throw new ApiKeyNotFound(id)
    const quota = key.quota
    if (quota === null) throw new NoQuota(id)
    const data = await storeCall('quota', () => fastify.quotas.usage(id, quota))
    return { status: 'success' as const, data }
  })

  app.post('/apikeys/:id/revoke', {
    schema: {
      operationId: 'revokeApiKey',
      summary: 'Revoke an API key (every instance within 1 s)',
      params: ApiKeyIdParams,
      response: { 200: MessageResponse, 404: UNKNOWN_ID, 503: STORE_DOWN }
    }
  }, async (request) => {
    const { id } = request.params
    if (!await storeCall('keys.revoke', () => fastify.apiKeys.revoke(id))) throw new ApiKeyNotFound(id)
    request.log.info({ event: 'api_key_revoked', keyId: id }, 'API key revoked')
    return { status: 'success' as const, message: 'API key revoked successfully' }
  })

  app.delete('/apikeys/:id', {
    schema: {
      operationId: 'deleteApiKey',
      summary: 'Delete an API key (every instance within 1 s)',
      params: ApiKeyIdParams,
      response: { 200: MessageResponse, 404: UNKNOWN_ID, 503: STORE_DOWN }
    }
  }, async (request) => {
    const { id } = request.params
    if (!await storeCall('keys.delete', () => fastify.apiKeys.delete(id))) throw new ApiKeyNotFound(id)
    request.log.info({ event: 'api_key_deleted', keyId: id }, 'API key deleted')
    return { status: 'success' as const, message: 'API key deleted successfully' }
  })
}

export default apiKeyRoutes
