// Draining state for graceful shutdown (SPEC §12): /health answers 503 once shutdown began,
// /ready too, while in-flight requests finish.
import fp from 'fastify-plugin'

export interface Lifecycle {
  readonly draining: boolean
  readonly startedAt: number
  /** Requests received and not yet answered. */
  readonly inflight: number
  startDraining (): void
}

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle
  }
}

export default fp(async function lifecycle (fastify) {
  let draining = false
  let inflight = 0
  fastify.decorate('lifecycle', {
    get draining () { return draining },
    get inflight () { return inflight },
    startedAt: Date.now(),
    startDraining () { draining = true }
  })
  fastify.addHook('onRequest', async () => { inflight++ })
  fastify.addHook('onResponse', async () => { inflight-- })
  fastify.addHook('preClose', async () => { draining = true })
}, { name: 'lifecycle' })
