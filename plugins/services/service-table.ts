// The service table (docs/proxying.md): which service a path belongs to, and everything the proxy needs to
// serve it, built once per table so the hot path reads plain fields. A table is immutable; the
// proxy holds the current one in a `ServiceTables` holder whose `current` can be swapped at run
// time (services managed live). A request keeps the route it matched, so in-flight requests
// finish on the table they started with.
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { Balancer } from '../../lib/balancer.js'
import { gatewayPathTaken, type ServiceConfig } from '../../lib/config.js'
import { RetryBudget } from '../../lib/retry-policy.js'
import type { ServiceBreaker } from '../circuit-breakers.js'
import type { ServiceHealth } from '../health-checks.js'
import { ConcurrencyLimit } from '../../lib/concurrency.js'
import { compileHeaderRule, type HeaderTransform } from '../../lib/header-rules.js'

export interface Backend {
  /** `http://host:port`, as undici's dispatch wants it. */
  readonly origin: string
  /** The Host header a request to this backend carries. */
  readonly host: string
}

/** One service, ready to serve: its config plus the objects that keep its state. */
export interface ServiceRoute {
  readonly service: ServiceConfig
  readonly name: string
  readonly prefix: string
  readonly backends: readonly Backend[]
  readonly balancer: Balancer
  readonly breaker: ServiceBreaker
  readonly health: ServiceHealth
  /** `(i) => health.usable(i)`, made once so picking a backend allocates nothing. */
  readonly usable: (i: number) => boolean
  readonly budget: RetryBudget
  /** The service's IP rules (plugins/ip-rules.ts), run first; null when it has none. */
  readonly ipRules: onRequestHookHandler | null
  /** The service's API-key hook (plugins/api-keys.ts). */
  readonly authenticate: onRequestHookHandler
  /** The service's rate-limit hook (plugins/rate-limit.ts), or null for `rateLimit: false`. */
  readonly limit: onRequestHookHandler | null
  /** The quota step (plugins/quotas.ts), run after the rate limit; null when quotas are not wired. */
  readonly quota: QuotaStep | null
  /** Header transforms toward the backend and the client (docs/policies.md#header-transforms), or null. */
  readonly requestHeaders: HeaderTransform | null
  readonly responseHeaders: HeaderTransform | null
  /** Concurrency caps to pass (the service's `maxConcurrent`, then the global one), or null for none. */
  readonly limits: readonly ConcurrencyLimit[] | null
}

/** A key's quota (docs/policies.md#quotas): the check, and the fields for a request refused before it. */
export interface QuotaStep {
  readonly check: onRequestHookHandler
  /** Called instead of `check` when an earlier step refused the request. */
  readonly refused: (request: FastifyRequest, reply: FastifyReply) => void
}

/** What a table needs from the other plugins to build a route. */
export interface RouteParts {
  breaker (service: ServiceConfig): ServiceBreaker
  health (service: ServiceConfig): ServiceHealth
  authenticate (service: ServiceConfig): onRequestHookHandler
  limit (service: ServiceConfig): onRequestHookHandler
  /** The service's IP-rule hook, or null for none (absent: no IP rules). */
  ipRules? (service: ServiceConfig): onRequestHookHandler | null
  /** The quota step (absent: no quotas). */
  quota? (service: ServiceConfig): QuotaStep
  /** MAX_CONCURRENT_REQUESTS, shared by every service; null when unset. */
  readonly globalLimit?: ConcurrencyLimit | null
  /**
   * The service's own cap (`maxConcurrent`), or null for none. Without it every route gets a new
   * count; the services plugin hands the same one to every rebuild of a service.
   */
  serviceLimit? (service: ServiceConfig): ConcurrencyLimit | null
}

export function buildRoute (service: ServiceConfig, parts: RouteParts): ServiceRoute {
  const health = parts.health(service)
  return {
    service,
    name: service.name,
    prefix: service.prefix,
    backends: service.backends.map((b) => {
      const url = new URL(b.url)
      return { origin: url.origin, host: url.host }
    }),
    balancer: new Balancer(service.backends, service.strategy),
    breaker: parts.breaker(service),
    health,
    usable: (i) => health.usable(i),
    budget: new RetryBudget(),
    ipRules: parts.ipRules?.(service) ?? null,
    authenticate: parts.authenticate(service),
    limit: service.unlimited ? null : parts.limit(service),
    quota: parts.quota?.(service) ?? null,
    requestHeaders: compileHeaderRule(service.definition.requestHeaders),
    responseHeaders: compileHeaderRule(service.definition.responseHeaders),
    limits: limitsFor(service, parts)
  }
}

function limitsFor (service: ServiceConfig, parts: RouteParts): ConcurrencyLimit[] | null {
  const limits: ConcurrencyLimit[] = []
  const own = parts.serviceLimit !== undefined
    ? parts.serviceLimit(service)
    : service.concurrency.max === null ? null : new ConcurrencyLimit(service.concurrency.max)
  if (own !== null) limits.push(own)
  const global = parts.globalLimit ?? null
  if (global !== null) limits.push(global)
  return limits.length === 0 ? null : limits
}

export class ServiceTable {
  readonly routes: readonly ServiceRoute[]
  readonly #byPrefix: Map<string, ServiceRoute>
  readonly #root: ServiceRoute | null

  constructor (routes: readonly ServiceRoute[]) {
    this.routes = routes
    this.#byPrefix = new Map(routes.map((r) => [r.prefix, r]))
    this.#root = this.#byPrefix.get('/') ?? null
  }

  /**
   * The service whose prefix is the longest one that `path` (no query string, starting with `/`)
   * begins with on a segment boundary: `/api/users` serves `/api/users` and `/api/users/1`, never
   * `/api/usersX`. Walks the path's own boundaries from the longest, so the cost is one Map lookup
   * per segment whatever the number of services.
   */
  match (path: string): ServiceRoute | null {
    let candidate = path
    for (;;) {
      const route = this.#byPrefix.get(candidate)
      if (route !== undefined) return route
      const cut = candidate.lastIndexOf('/', candidate.length - 1)
      // Paths under the gateway's own routes are never proxied, not even by a root service.
      if (cut <= 0) return this.#root !== null && gatewayPathTaken(path) === undefined ? this.#root : null
      candidate = candidate.slice(0, cut)
    }
  }
}

/** The table in use. `current` is read once per request; `swap` replaces it for new requests. */
export class ServiceTables {
  #current: ServiceTable
  constructor (initial: ServiceTable) { this.#current = initial }
  get current (): ServiceTable { return this.#current }
  swap (next: ServiceTable): void { this.#current = next }
}
