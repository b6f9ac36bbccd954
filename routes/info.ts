// Gateway info and registered services (docs/admin-api.md#health-and-info, the seed's /info).
import type { FastifyInstance } from 'fastify'
import { VERSION } from '../lib/version.js'

export default async function infoRoutes (app: FastifyInstance): Promise<void> {
  app.get('/info', async () => {
    const health = new Map(app.backendHealth.list().map((s) => [s.name, s.status]))
    return {
      status: 'ok',
      name: 'api-gateway',
      version: VERSION,
      storage: app.config.storage,
      uptime_seconds: Math.round((Date.now() - app.lifecycle.startedAt) / 1000),
      services: app.serviceTables.current.routes.map(({ service: s }) => ({
        name: s.name,
        path_prefix: s.prefix,
        target_url: s.backends[0].url,
        backends: s.backends.map((b) => ({ url: b.url, weight: b.weight })),
        strategy: s.strategy,
        auth: s.auth,
        status: health.get(s.name) ?? 'unknown'
      }))
    }
  })
}
