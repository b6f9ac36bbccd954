// The admin services endpoints (docs/admin-api.md#managing-services), inside the admin scope (Basic auth, no-store, 64 KiB
// bodies). Bodies are validated by the routes file's entry schema; a prefix that collides with
// another service or the gateway's own paths is 409; `?dry_run=true` reports the diff only.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import { ServiceFileEntry, type ServiceDefinition } from '../../lib/schemas/routes-file.js'
import { ServiceNotFound, ValidationFailed } from '../../lib/errors.js'
import { describeIssues, ErrorEnvelope } from '../../lib/schemas/api-keys.js'
import {
  DryRunQuery, PatchServiceBody, PutServiceBody, ServiceChangeResponse, ServiceListResponse, ServiceNameParams, ServiceOneResponse
} from '../../lib/schemas/services.js'
import { mergePatch } from '../../lib/service-changes.js'
import { storeDownResponse } from './openapi.js'
import type { ServiceChange, ServiceEntry } from '../../plugins/services/index.js'
import { formatSchemaErrors } from './api-keys.js'
import { jsonOrNothing } from './json-body.js'

/** Statuses these routes produce themselves (the admin scope documents 400/401/413/415/429). */
const UNKNOWN_NAME = ErrorEnvelope.meta({ description: 'No service has this name' })
const CONFLICT = ErrorEnvelope.meta({
  description: 'The prefix is taken by another service or by the gateway, or SERVICES_SOURCE=file makes the routes file the truth'
})
const STORE_DOWN = storeDownResponse('service')
const CREATED = ServiceChangeResponse.meta({
  description: 'Created (with dry_run=true: 200, nothing applied)',
  headers: { location: { type: 'string', description: 'The new service: /admin/services/{name}' } }
})

const MERGE_PATCH = 'application/merge-patch+json'

const record = (e: ServiceEntry) => ({ ...e.definition, version: e.version, updated_at: e.updated_at })

const serviceRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setSerializerCompiler(serializerCompiler)
  fastify.setSchemaErrorFormatter(formatSchemaErrors)
  const app = fastify.withTypeProvider<ZodTypeProvider>()
  const services = fastify.services
  // One admin account (docs/admin-api.md#authentication-and-errors): the user a change is logged with.
  const user = fastify.config.admin.authEnabled ? fastify.config.admin.username : 'anonymous (admin auth disabled)'

  /** The body with its name checked against the URL's, validated whole by the routes-file schema. */
  function definition (name: string, body: unknown): ServiceDefinition {
    const parsed = ServiceFileEntry.safeParse({ ...(body as object), name })
    if (!parsed.success) throw new ValidationFailed(describeIssues(parsed.error.issues, 'body'))
    return parsed.data
  }

  function answer (change: ServiceChange, request: FastifyRequest, name: string) {
    const verb = change.dryRun ? `would be ${change.action}` : change.action
    return {
      status: 'success' as const,
      message: `Service ${name} ${verb} (table version ${change.tableVersion})`,
      data: {
        service: change.service === null ? null : record(change.service),
        action: change.action,
        diff: change.diff,
        dry_run: change.dryRun,
        table_version: change.tableVersion
      }
    }
  }

  function nameMatches (param: string, body: { name?: unknown }): void {
    if (body.name != null && body.name !== param) throw new ValidationFailed(`name: must be "${param}", the name in the URL`)
  }

  app.get('/services', {
    schema: { operationId: 'listServices', summary: 'List services, with the table version', response: { 200: ServiceListResponse } }
  }, async () => ({ status: 'success' as const, data: services.list().map(record), version: services.version, source: services.source }))

  app.get('/services/:name', {
    schema: { operationId: 'getService', summary: 'Get one service', params: ServiceNameParams, response: { 200: ServiceOneResponse, 404: UNKNOWN_NAME } }
  }, async (request) => {
    const entry = services.get(request.params.name)
    if (entry === null) throw new ServiceNotFound(request.params.name)
    return { status: 'success' as const, data: record(entry) }
  })

  app.put('/services/:name', {
    schema: {
      operationId: 'putService',
      summary: 'Create or replace a service (201 created, 200 replaced)',
      params: ServiceNameParams,
      querystring: DryRunQuery,
      body: PutServiceBody,
      response: { 200: ServiceChangeResponse, 201: CREATED, 409: CONFLICT, 503: STORE_DOWN }
    }
  }, async (request, reply) => {
    const { name } = request.params
    nameMatches(name, request.body)
    const change = await services.put(name, definition(name, request.body), { user, dryRun: request.query.dry_run === 'true' })
    if (change.action === 'created' && !change.dryRun) reply.code(201).header('location', `/admin/services/${name}`)
    return answer(change, request, name)
  })

  // A JSON merge patch (RFC 7396) may say so: its own scope takes application/merge-patch+json,
  // which the other routes refuse (415).
  await fastify.register(async (patchScope) => {
    patchScope.addContentTypeParser(MERGE_PATCH, { parseAs: 'string' }, jsonOrNothing(patchScope))
    patchScope.withTypeProvider<ZodTypeProvider>().patch('/services/:name', {
      schema: {
        operationId: 'patchService',
        summary: 'Change a service (JSON merge patch: absent keeps, null removes)',
        consumes: ['application/json', MERGE_PATCH],
        params: ServiceNameParams,
        querystring: DryRunQuery,
        body: PatchServiceBody,
        response: { 200: ServiceChangeResponse, 404: UNKNOWN_NAME, 409: CONFLICT, 503: STORE_DOWN }
      }
    }, async (request) => {
      const { name } = request.params
      nameMatches(name, request.body)
      const current = services.get(name)
      if (current === null) throw new ServiceNotFound(name)
      const merged = mergePatch(current.definition, request.body)
      const change = await services.put(name, definition(name, merged), { user, dryRun: request.query.dry_run === 'true' })
      return answer(change, request, name)
    })
  })

  app.delete('/services/:name', {
    schema: { operationId: 'deleteService', summary: 'Remove a service', params: ServiceNameParams, response: { 200: ServiceChangeResponse, 404: UNKNOWN_NAME, 409: CONFLICT, 503: STORE_DOWN } }
  }, async (request) => {
    const { name } = request.params
    const change = await services.delete(name, { user })
    if (change === null) throw new ServiceNotFound(name)
    return answer(change, request, name)
  })
}

export default serviceRoutes
