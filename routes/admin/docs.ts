// GET /admin/docs: a page for the admin API, Swagger UI (@fastify/swagger-ui) over the OpenAPI
// document that routes/admin/openapi.ts generates (docs/admin-api.md#the-docs-page). It lives in
// the admin scope, so it is behind the same Basic auth as every /admin route, answers only on the
// admin listener when ADMIN_PORT is set (plugins/admin-listener.ts), and is left out of the
// document itself (its routes are `hide`). Its assets are served from the package, never from a
// CDN, with a Content-Security-Policy that allows nothing else.
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

/** Where the page is, inside the admin scope (registered with prefix /admin). */
export const DOCS_PATH = '/docs'

export default async function adminDocs (fastify: FastifyInstance): Promise<void> {
  await fastify.register(swaggerUi, {
    routePrefix: DOCS_PATH,
    // The page's asset links are absolute: this scope's own prefix is not visible to the plugin.
    indexPrefix: fastify.prefix,
    staticCSP: true,
    // Same-origin only: `upgrade-insecure-requests` would send the assets of a plain-HTTP admin
    // listener (the usual one, inside a cluster) to https and break the page.
    transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ''),
    // BaseLayout: no top bar (its URL box would load other documents; its logo's inline style
    // is one the CSP refuses).
    uiConfig: { layout: 'BaseLayout', docExpansion: 'list', deepLinking: true, tryItOutEnabled: false, displayOperationId: true },
    theme: { title: 'API gateway admin API' }
  })
}
