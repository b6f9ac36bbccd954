// Wrong methods and unknown paths inside /admin (RFC 9110 §15.5.6). Without this, a method with
// no route falls through to the proxy's catch-all and gets 404, which reads as "no such
// resource". Here a path that exists answers 405 with `Allow` listing its methods, in the JSON
// envelope; anything else under /admin is 404. Admin paths are exact: a trailing slash or an empty
// segment (`/admin/apikeys/`, `/admin//apikeys`) is 404 for every admin path, never a validation
// 400 on an empty id and never the collection. Registered in the admin scope before its routes
// (fastify-plugin, so the onRoute hook sees them); its catch-all runs after Basic auth like every
// admin route, so an anonymous caller learns nothing about which paths exist.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AdminMethodNotAllowed, AdminPathNotFound } from '../../lib/errors.js'
import { ROUTED_METHODS } from '../../lib/http-methods.js'

interface PathMethods { pattern: RegExp, methods: Set<string> }

/** `/admin/apikeys/:id/revoke` → a RegExp matching that path with any one-segment id. */
export function routePattern (url: string): RegExp {
  const source = url.split('/').map((seg) => {
    if (seg === '*') return '.*'
    if (seg.startsWith(':')) return '[^/]+'
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  }).join('/')
  return new RegExp(`^${source}$`)
}

/** The request's path, without its query string. */
function pathOf (request: FastifyRequest): string {
  const url = request.raw.url as string
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

async function methodNotAllowed (fastify: FastifyInstance): Promise<void> {
  const paths = new Map<string, PathMethods>()
  fastify.addHook('onRoute', (route) => {
    if (route.url.endsWith('*')) return
    const entry = paths.get(route.url) ?? { pattern: routePattern(route.url), methods: new Set<string>() }
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) entry.methods.add(m)
    paths.set(route.url, entry)
  })

  fastify.addHook('onRequest', async (request) => {
    const path = pathOf(request)
    if (path.endsWith('/') || path.includes('//')) throw new AdminPathNotFound()
  })

  fastify.route({
    method: ROUTED_METHODS as string[],
    url: '/*',
    schema: { hide: true },
    exposeHeadRoute: false,
    // Answer before any body is read: the method is wrong whatever the body says.
    onRequest: async (request, reply) => {
      const path = pathOf(request)
      const allowed = new Set<string>()
      for (const entry of paths.values()) {
        if (entry.pattern.test(path)) for (const m of entry.methods) allowed.add(m)
      }
      // The method exists here but the router did not match it: a parameter over maxParamLength.
      if (allowed.size === 0 || allowed.has(request.method)) throw new AdminPathNotFound()
      const allow = [...allowed].sort().join(', ')
      reply.header('allow', allow)
      throw new AdminMethodNotAllowed(allow)
    },
    handler: async () => { throw new AdminPathNotFound() }
  })
}

export default fp(methodNotAllowed, { name: 'admin-method-not-allowed', fastify: '5.x' })
