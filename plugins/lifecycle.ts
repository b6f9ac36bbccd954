// Draining state for graceful shutdown (docs/operations.md): /health answers 503 once shutdown began,
// /ready too, while in-flight requests finish.
import fp from 'fastify-plugin'

export interface Lifecycle {
  readonly draining: boolean
  readonly startedAt: number
  startDraining (): void
}

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle
  }
}

export default fp(async function lifecycle (fastify) {
  let draining = false
  fastify.decorate('lifecycle', {
    get draining () { return draining },
    startedAt: Date.now(),
    startDraining () { draining = true }
  })
  fastify.addHook('preClose', async () => { draining = true })
}, { name: 'lifecycle', fastify: '5.x' })
