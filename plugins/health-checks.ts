// Backend health (docs/admin-api.md#health-and-info): an active check of each backend's healthPath every
// HEALTH_CHECK_INTERVAL_SECONDS, plus passive marking when a connection to it fails.
import fp from 'fastify-plugin'
import { Agent, request as undiciRequest } from 'undici'
import type { ServiceConfig } from '../lib/config.js'
import { noop } from '../lib/noop.js'

export type BackendStatus = 'healthy' | 'unhealthy' | 'unknown'

export interface BackendHealth {
  url: string
  status: BackendStatus
  response_time_ms: number | null
  last_check: string | null
  error: string | null
}

export interface ServiceHealth {
  /** Whether backend i may be chosen: anything not known to be down. */
  usable (i: number): boolean
  markFailed (i: number, reason: string): void
  readonly backends: readonly BackendHealth[]
}

export interface HealthRegistry {
  get (service: string): ServiceHealth
  list (): Array<{ name: string, status: BackendStatus, backends: readonly BackendHealth[] }>
  /** Runs one round of checks now (also used by tests). */
  checkAll (): Promise<void>
  /** Fresh (unknown) state for `service`, replacing any it had: a new or re-pointed service. */
  add (service: ServiceConfig): ServiceHealth
  /** Stops checking `name` (its service was removed). */
  remove (name: string): void
}

declare module 'fastify' {
  interface FastifyInstance {
    backendHealth: HealthRegistry
  }
}

class ServiceHealthState implements ServiceHealth {
  readonly backends: BackendHealth[]
  constructor (readonly service: ServiceConfig) {
    this.backends = service.backends.map((b) => ({ url: b.url, status: 'unknown', response_time_ms: null, last_check: null, error: null }))
  }

  usable (i: number): boolean { return this.backends[i].status !== 'unhealthy' }

  markFailed (i: number, reason: string): void {
    const b = this.backends[i]
    b.status = 'unhealthy'
    b.error = reason
    b.last_check = new Date().toISOString()
  }

  overall (): BackendStatus {
    if (this.backends.some((b) => b.status === 'healthy')) return 'healthy'
    if (this.backends.every((b) => b.status === 'unknown')) return 'unknown'
    return 'unhealthy'
  }
}

export default fp(async function healthChecks (fastify) {
  const { intervalMs, timeoutMs } = fastify.config.healthCheck
  const states = new Map(fastify.config.services.map((s) => [s.name, new ServiceHealthState(s)]))
  // Own pool so checks never queue behind proxied traffic; TLS verification stays on.
  const agent = new Agent({ connect: { timeout: timeoutMs, rejectUnauthorized: true }, keepAliveTimeout: 1000 })
  let timer: NodeJS.Timeout | null = null
  let closing = false

  async function checkOne (state: ServiceHealthState, i: number): Promise<void> {
    const b = state.backends[i]
    const started = performance.now()
    try {
      const res = await undiciRequest(b.url + state.service.healthPath, {
        dispatcher: agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs)
      })
      await res.body.dump()
      b.status = res.statusCode < 500 ? 'healthy' : 'unhealthy'
      b.error = res.statusCode < 500 ? null : `health check answered ${res.statusCode}`
    } catch (err) {
      b.status = 'unhealthy'
      b.error = describe(err)
    }
    b.response_time_ms = Math.round((performance.now() - started) * 10) / 10
    b.last_check = new Date().toISOString()
  }

  async function checkAll (): Promise<void> {
    const jobs: Array<Promise<void>> = []
    for (const state of states.values()) state.backends.forEach((_, i) => jobs.push(checkOne(state, i)))
    await Promise.all(jobs)
  }

  function schedule (): void {
    if (closing) return
    timer = setTimeout(() => { checkAll().finally(schedule).catch(noop) }, intervalMs)
    timer.unref()
  }

  fastify.decorate('backendHealth', {
    get (service: string) {
      const s = states.get(service)
      if (s === undefined) throw new Error(`unknown service ${service}`)
      return s
    },
    list () {
      return [...states.values()].map((s) => ({ name: s.service.name, status: s.overall(), backends: s.backends }))
    },
    checkAll,
    add (service: ServiceConfig) {
      const state = new ServiceHealthState(service)
      states.set(service.name, state)
      return state
    },
    remove (name: string) { states.delete(name) }
  })

  fastify.addHook('onListen', async () => {
    // Not awaited: listening must not wait for slow backends.
    checkAll().finally(schedule).catch(noop)
  })
  fastify.addHook('onClose', async () => {
    closing = true
    if (timer !== null) clearTimeout(timer)
    await agent.close()
  })
}, { name: 'health-checks', fastify: '5.x', dependencies: ['config'] })

const TLS_ERRORS = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED'])

/** A short, address-free description of a failed check, for operators. */
function describe (err: unknown): string {
  const e = err as { code?: string, name?: string }
  if (e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout'
  if (e.code === 'ECONNREFUSED') return 'connection refused'
  if (e.code === 'ECONNRESET' || e.code === 'UND_ERR_SOCKET') return 'connection reset'
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') return 'host not found'
  if ((typeof e.code === 'string' && e.code.startsWith('ERR_TLS')) || TLS_ERRORS.has(e.code ?? '')) return 'TLS verification failed'
  return e.code ?? 'error'
}
