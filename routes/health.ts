// Liveness, readiness and backend health (docs/admin-api.md#health-and-info).
import type { FastifyInstance } from 'fastify'
import { VERSION } from '../lib/version.js'

export default async function healthRoutes (app: FastifyInstance): Promise<void> {
  app.get('/health', async (_request, reply) => {
    if (app.lifecycle.draining) return reply.code(503).header('connection', 'close').send({ status: 'draining' })
    return {
      status: 'ok',
      version: VERSION,
      uptime_seconds: Math.round((Date.now() - app.lifecycle.startedAt) / 1000),
      services_version: app.services.version,
      timestamp: new Date().toISOString()
    }
  })

  app.get('/ready', async (_request, reply) => {
    const store = await app.store.ping()
    const ready = store && !app.lifecycle.draining
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'not_ready',
      draining: app.lifecycle.draining,
      store: {
        kind: app.store.kind,
        status: store ? 'up' : 'down',
        ...(app.store.warnings.length > 0 ? { warnings: app.store.warnings } : {})
      },
      // Shown, never a reason to be unready: an IdP outage must not take every instance out (docs/jwt.md).
      ...(app.jwtAuth.enabled ? { jwt: [...app.jwtAuth.keySets.values()].map((k) => k.status()) } : {})
    })
  })

  app.get('/services/health', async () => {
    const services = app.backendHealth.list()
    return {
      status: services.every((s) => s.status !== 'unhealthy') ? 'ok' : 'degraded',
      services: services.map((s) => ({
        name: s.name,
        status: s.status,
        backends: s.backends.map((b) => ({ ...b }))
      }))
    }
  })
}
