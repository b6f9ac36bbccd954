// The admin scope, registered by the app with `{ prefix: '/admin' }`. Everything in it runs Basic
// auth first (plugins/admin-auth.ts, this scope only), gets `Cache-Control: no-store`, and accepts
// bodies of at most 64 KiB (SPEC §5: 413 above). GET /admin/openapi.json documents every admin
// route, generated from the same zod schemas that validate them.
import type { FastifyPluginAsync, HTTPMethods, RouteOptions } from 'fastify'
import { z } from 'zod'
import adminAuth from '../../plugins/admin-auth.js'
import apiKeyRoutes from './api-keys.js'
import circuitBreakerRoutes from './circuit-breakers.js'
import serviceRoutes from './services.js'
import { ErrorEnvelope } from '../../src/schemas/api-keys.js'

export const ADMIN_BODY_LIMIT = 64 * 1024
/** Version of the admin API contract (not of the gateway build). */
export const ADMIN_API_VERSION = '1.0.0'

interface DocumentedRoute {
  method: string
  url: string
  schema: RouteOptions['schema']
}

function isZod (s: unknown): s is z.ZodType {
  return s instanceof z.ZodType
}

function jsonSchema (s: unknown, io: 'input' | 'output'): Record<string, unknown> | undefined {
  if (!isZod(s)) return undefined
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>
  return rest
}

/** OpenAPI 3.1 (its schemas are JSON Schema 2020-12, what z.toJSONSchema emits). */
export function openApiDocument (routes: DocumentedRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  const errorSchema = jsonSchema(ErrorEnvelope, 'output')
  const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: errorSchema } } })
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
    const schema = (r.schema ?? {}) as Record<string, unknown>
    const op: Record<string, unknown> = { summary: schema.summary ?? `${r.method} ${path}` }
    const params = jsonSchema(schema.params, 'input') as { properties?: Record<string, unknown> } | undefined
    const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])
    if (names.length > 0) {
      op.parameters = names.map((name) => ({ name, in: 'path', required: true, schema: params?.properties?.[name] ?? { type: 'string' } }))
    }
    const body = jsonSchema(schema.body, 'input')
    if (body !== undefined) op.requestBody = { required: true, content: { 'application/json': { schema: body } } }
    const responses: Record<string, unknown> = {}
    const declared = (schema.response ?? {}) as Record<string, unknown>
    for (const [code, s] of Object.entries(declared)) {
      responses[code] = { description: code.startsWith('2') ? 'Success' : 'Error', content: { 'application/json': { schema: jsonSchema(s, 'output') ?? {} } } }
    }
    if (Object.keys(declared).length === 0) responses['200'] = { description: 'Success' }
    if (r.url.startsWith('/services/') && r.method !== 'GET') responses['409'] = errorResponse('Prefix taken by another service or the gateway, or SERVICES_SOURCE=file')
    if (body !== undefined) {
      responses['400'] = errorResponse('Invalid body: the message names the field')
      responses['413'] = errorResponse('Body larger than 64 KiB')
      responses['415'] = errorResponse('Body is not application/json')
    }
    if (names.length > 0) responses['404'] = errorResponse('Unknown id or name')
    responses['401'] = errorResponse('Missing or wrong admin credentials')
    responses['429'] = errorResponse('Too many failed logins from this address')
    op.responses = responses
    paths[path] ??= {}
    paths[path][r.method.toLowerCase()] = op
  }
  return {
    openapi: '3.1.0',
    info: { title: 'API gateway admin API', version },
    servers: [{ url: '/admin' }],
    components: { securitySchemes: { basicAuth: { type: 'http', scheme: 'basic' } } },
    security: [{ basicAuth: [] }],
    paths
  }
}

const adminRoutes: FastifyPluginAsync = async (fastify, opts) => {
  const prefix = (opts as { prefix?: string }).prefix ?? fastify.prefix
  const routes: DocumentedRoute[] = []

  fastify.addHook('onRoute', (route) => {
    route.bodyLimit = Math.min(route.bodyLimit ?? ADMIN_BODY_LIMIT, ADMIN_BODY_LIMIT)
    const methods = (Array.isArray(route.method) ? route.method : [route.method]) as HTTPMethods[]
    for (const method of methods) {
      if (method === 'HEAD') continue
      const url = route.url.startsWith(prefix) ? route.url.slice(prefix.length) || '/' : route.url
      routes.push({ method, url, schema: route.schema })
    }
  })

  // Before auth, so a 401 is not cached either.
  fastify.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })
  await fastify.register(adminAuth)

  await fastify.register(apiKeyRoutes)
  await fastify.register(circuitBreakerRoutes)
  await fastify.register(serviceRoutes)

  let doc: string | undefined
  fastify.get('/openapi.json', { schema: { summary: 'This document' } }, async (_request, reply) => {
    doc ??= JSON.stringify(openApiDocument(routes, ADMIN_API_VERSION))
    return reply.type('application/json; charset=utf-8').send(doc)
  })
}

export default adminRoutes
