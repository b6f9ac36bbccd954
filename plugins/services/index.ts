// The services plugin (docs/admin-api.md#managing-services): owns the proxy's service table and everything built per service
// (breaker, health state, metric series, auth and rate-limit hooks), and keeps it in step with its
// source of truth:
//   file   ROUTES_FILE (or the two default services) at start; SIGHUP re-reads the file and keeps
//          the running table when the file is invalid. Admin writes are refused (409).
//   store  the store's definitions; an empty store is seeded once from ROUTES_FILE or the default
//          services. Admin writes go to the store (checked against the version they were decided
//          on), apply here before the response, and reach other instances through the store's
//          change notifications (Redis pub/sub), with a version poll as the safety net.
// A table is swapped whole: a request keeps the route it matched, so in-flight requests finish on
// the table they started with. One bad definition is skipped (and logged), never applied, and a
// set with no valid definition never replaces the running table.
import fp from 'fastify-plugin'
import { DEFAULT_SERVICE_VARIABLES, definitionProblems, reloadRoutesFile, serviceFromDefinition, type ServiceConfig } from '../../lib/config.js'
import { ServiceFileEntry, type ServiceDefinition } from '../../lib/schemas/routes-file.js'
import { ServiceConflict, ServicesReadOnly, ServiceStoreUnavailable, ValidationFailed } from '../../lib/errors.js'
import { diffDefinitions, type Diff } from '../../lib/service-changes.js'
import { ConcurrencyLimit } from '../../lib/concurrency.js'
import { buildRoute, ServiceTable, ServiceTables, type ServiceRoute } from './service-table.js'
import type { ServiceSnapshot, StoredService } from '../store/types.js'

export type { QuotaStep, ServiceRoute } from './service-table.js'

export interface ServiceEntry {
  name: string
  definition: ServiceDefinition
  version: number
  updated_at: string
}

export interface ServiceChange {
  action: 'created' | 'updated' | 'unchanged' | 'deleted'
  service: ServiceEntry | null
  diff: Diff
  dryRun: boolean
  tableVersion: number
}

export interface Services {
  readonly source: 'file' | 'store'
  /** Version of the table in use. */
  readonly version: number
  list (): ServiceEntry[]
  get (name: string): ServiceEntry | null
  /** Creates or replaces `name` (validated definition); applied here before it resolves. */
  put (name: string, definition: ServiceDefinition, opts: { user: string, dryRun: boolean }): Promise<ServiceChange>
  /** null when no service has that name. */
  delete (name: string, opts: { user: string }): Promise<ServiceChange | null>
  /** SIGHUP in `file` mode: true when the file was valid and applied. */
  reloadFile (): boolean
  /** Reads the store and applies its table when its version differs (store mode). */
  sync (): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
    serviceTables: ServiceTables
  }
}

/** How often an instance compares its table version with the store's (missed messages, outages). */
const POLL_MS = 5000
const MAX_WRITE_ATTEMPTS = 3

export default fp(async function services (app) {
  const { config, gatewayMetrics: metrics, store } = app
  const source = config.servicesSource
  const jwtEnabled = config.jwt.issuers.length > 0
  const tables = new ServiceTables(new ServiceTable([]))
  /** Every stored definition, valid or not, as of `version` (local writes update it exactly). */
  let stored: StoredService[] = []
  let applied = new Map<string, ServiceEntry>()
  let version = 0
  /** Services whose breaker, health state and series exist (the plugins build the configured ones). */
  const live = new Set(config.services.map((s) => s.name))
  let queue: Promise<unknown> = Promise.resolve()
  let seeded = source === 'file'
  /** Whether the default services were compared with the environment (once, at the first load). */
  let followed = source === 'file' || config.routesFile !== null

  /** Runs `fn` after every earlier change or sync: one table decision at a time. */
  function exclusive<T> (fn: () => Promise<T> | T): Promise<T> {
    const run = queue.then(fn)
    queue = run.catch(() => {})
    return run
  }

  /** Builds and swaps the table for `entries` at `next`; false (table kept) when nothing is valid. */
  function apply (entries: StoredService[], next: number): boolean {
    const accepted: Array<{ entry: ServiceEntry, service: ServiceConfig }> = []
    const prefixes = new Map<string, string>()
    for (const s of [...entries].sort((a, b) => a.version - b.version)) {
      const parsed = ServiceFileEntry.safeParse(s.definition)
      const problems = parsed.success
        ? [...definitionProblems(parsed.data, config.retry, '', jwtEnabled), ...(parsed.data.name === s.name ? [] : ['name: does not match the stored name'])]
        : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
      if (!parsed.success || problems.length > 0) {
        app.log.error({ event: 'service_definition_invalid', service: s.name, problems }, `service ${s.name}: definition is invalid; skipped`)
        continue
      }
      const service = serviceFromDefinition(parsed.data, config.retry, config.upstreamTimeoutMs)
      const holder = prefixes.get(service.prefix)
      if (holder !== undefined) {
        app.log.error({ event: 'service_definition_invalid', service: s.name, prefix: service.prefix }, `service ${s.name}: prefix ${service.prefix} is already served by ${holder}; skipped`)
        continue
      }
      prefixes.set(service.prefix, s.name)
      accepted.push({ entry: { name: s.name, definition: parsed.data, version: s.version, updated_at: s.updated_at }, service })
    }
    if (accepted.length === 0 && entries.length > 0) {
      app.log.error({ event: 'services_not_applied', version: next }, 'no valid service definition: keeping the running service table')
      return false
    }

    const previous = new Map(tables.current.routes.map((r) => [r.name, r]))
    const routes = accepted.map(({ service }) => routeFor(service, previous.get(service.name)))
    const names = new Set(routes.map((r) => r.name))
    for (const name of live) {
      if (names.has(name)) continue
      app.breakers.remove(name)
      app.backendHealth.remove(name)
      serviceLimits.delete(name)
      metrics.removeService(name)
      live.delete(name)
    }
    tables.swap(new ServiceTable(routes))
    applied = new Map(accepted.map(({ entry }) => [entry.name, entry]))
    stored = entries
    version = next
    metrics.servicesVersion(next)
    return true
  }

  // MAX_CONCURRENT_REQUESTS: one cap shared by every service, whatever the table.
  const globalLimit = config.shedding.maxConcurrentRequests === null ? null : new ConcurrencyLimit(config.shedding.maxConcurrentRequests)
  // Each service's `maxConcurrent` count, by name: it follows the service across rebuilds (any
  // change makes a new route), so requests in flight on the old route still count against the cap.
  // A removed cap keeps the count (its requests still give their slots back to it); requests
  // admitted while the service had no cap are not counted if the cap comes back. Deleting the
  // service drops it.
  const serviceLimits = new Map<string, ConcurrencyLimit>()
  function serviceLimit (s: ServiceConfig): ConcurrencyLimit | null {
    const max = s.concurrency.max
    if (max === null) return null
    const limit = serviceLimits.get(s.name)
    if (limit === undefined) {
      const fresh = new ConcurrencyLimit(max)
      serviceLimits.set(s.name, fresh)
      return fresh
    }
    if (limit.max !== max) limit.resize(max)
    return limit
  }

  /** The route for `service`: the previous one when nothing changed; its breaker kept unless its backends changed. */
  function routeFor (service: ServiceConfig, prev: ServiceRoute | undefined): ServiceRoute {
    const wasLive = live.has(service.name)
    if (prev !== undefined && JSON.stringify(prev.service) === JSON.stringify(service)) return prev
    const sameBackends = prev !== undefined && wasLive &&
      JSON.stringify(prev.service.backends.map((b) => b.url)) === JSON.stringify(service.backends.map((b) => b.url))
    if (!wasLive) metrics.addService(service.name)
    live.add(service.name)
    return buildRoute(service, {
      breaker: (s) => sameBackends ? prev.breaker : app.breakers.create(s.name),
      health: (s) => sameBackends && prev.service.healthPath === s.healthPath ? prev.health : app.backendHealth.add(s),
      ipRules: (s) => app.ipRules.hookFor(s),
      // JWT when one is sent and the service accepts it, else the API-key hook (docs/jwt.md).
      authenticate: (s) => app.jwtAuth.hookFor(s, app.apiKeys.hookFor(s)),
      limit: (s) => app.rateLimiter.hookFor(s),
      quota: (s) => app.quotas.hookFor(s),
      globalLimit,
      serviceLimit
    })
  }

  const asStored = (list: readonly ServiceConfig[], at: string, v: number): StoredService[] =>
    list.map((s) => ({ name: s.name, definition: s.definition as Record<string, unknown>, version: v, updated_at: at }))

  /** Store mode: seed an empty store once, then apply what it holds. */
  async function load (): Promise<void> {
    if (!seeded) {
      const did = await store.services.seed(config.services.map((s) => ({ name: s.name, definition: s.definition as Record<string, unknown> })), new Date().toISOString())
      seeded = true
      if (did) app.log.info({ event: 'services_seeded', services: config.services.map((s) => s.name) }, `service store was empty: imported ${config.services.length} services from ${config.routesFile ?? 'the default services'}`)
    }
    let snap = await store.services.snapshot()
    if (!followed) {
      snap = await followEnvironment(snap)
      followed = true
    }
    if (snap.version !== version || stored.length === 0) {
      const before = applied
      if (apply(snap.services, snap.version)) logRemote(before)
    }
  }

  /**
   * The default services keep following AUTH_SERVICE_URL / USER_SERVICE_URL after they were seeded:
   * one the gateway wrote from the environment and nobody changed through the admin API is updated
   * to what the environment says now. One changed through the admin API is never overwritten; its
   * variable is ignored, and start-up says so.
   */
  async function followEnvironment (snap: ServiceSnapshot): Promise<ServiceSnapshot> {
    for (const service of config.services) {
      const variable = DEFAULT_SERVICE_VARIABLES[service.name]
      if (variable === undefined) continue
      const url = service.definition.backends[0].url
      for (let attempt = 1; ; attempt++) {
        const current = snap.services.find((s) => s.name === service.name)
        if (current === undefined) {
          app.log.info({ event: 'service_variable_ignored', service: service.name, variable },
            `${variable} is ignored: ${service.name} was deleted through the admin API`)
          break
        }
        const diff = diffDefinitions(current.definition, service.definition)
        if (Object.keys(diff).length === 0) break
        // Definitions stored before the mark existed: only the seed writes version 1.
        const fromEnvironment = current.seeded ?? current.version === 1
        if (!fromEnvironment) {
          if (diff.backends !== undefined) {
            app.log.warn({ event: 'service_variable_ignored', service: service.name, variable, value: url },
              `${variable}=${url} is ignored: ${service.name} was changed through the admin API, which keeps its backends; ` +
              `change them there (PATCH /admin/services/${service.name})`)
          }
          break
        }
        const written = await store.services.put(service.name, service.definition as Record<string, unknown>, new Date().toISOString(), snap.version, true)
        snap = await store.services.snapshot()
        if (written !== null) {
          app.log.info({ event: 'service_follows_environment', service: service.name, variable, diff, version: written },
            `${service.name} updated from ${variable}=${url} (it was seeded from the environment and not changed through the admin API)`)
          break
        }
        // Another instance wrote first: decide again on what it wrote.
        if (attempt >= MAX_WRITE_ATTEMPTS) break
      }
    }
    return snap
  }

  /** Logs what a change made elsewhere (another instance, the file) did to this table. */
  function logRemote (before: Map<string, ServiceEntry>): void {
    for (const name of new Set([...before.keys(), ...applied.keys()])) {
      const diff = diffDefinitions(before.get(name)?.definition ?? null, applied.get(name)?.definition ?? null)
      if (Object.keys(diff).length === 0) continue
      const action = !before.has(name) ? 'created' : !applied.has(name) ? 'deleted' : 'updated'
      app.log.info({ event: 'service_applied', service: name, action, diff, version }, `service ${name} ${action} (table version ${version})`)
    }
  }

  let syncing: Promise<void> | null = null
  /** Notifications heard so far: one arriving while a read is under way asks for another read. */
  let heard = 0
  function sync (): Promise<void> {
    if (source !== 'store') return Promise.resolve()
    if (syncing === null) {
      // Coalesced: a burst of notifications costs one read.
      const before = heard
      syncing = exclusive(load).finally(() => { syncing = null })
      syncing.then(() => { if (heard !== before) syncQuietly() }, () => {})
    }
    return syncing
  }
  let lastSyncError = 0
  const syncQuietly = (): void => {
    sync().catch((err: Error) => {
      metrics.storeError('services.read')
      if (Date.now() - lastSyncError > 10_000) app.log.warn({ event: 'services_sync_failed', reason: err.message }, 'cannot read the service store; serving the current table')
      lastSyncError = Date.now()
    })
  }

  if (source === 'file') {
    apply(asStored(config.services, new Date().toISOString(), 1), 1)
  } else {
    try {
      await sync()
    } catch (err) {
      metrics.storeError('services.read')
      app.log.warn({ event: 'services_store_unavailable', reason: (err as Error).message },
        'service store unreachable at start: serving the seed services until it answers')
      apply(asStored(config.services, new Date().toISOString(), 0), 0)
      stored = []
    }
    store.services.onChange((v) => {
      heard++
      if (v !== version) syncQuietly()
    })
    if (store.kind === 'redis') {
      const timer = setInterval(() => {
        store.services.version().then((v) => { if (v !== version || !seeded) syncQuietly() }, () => {})
      }, POLL_MS)
      timer.unref()
      app.addHook('onClose', async () => { clearInterval(timer) })
    }
  }

  async function write (name: string, user: string, dryRun: boolean, decide: () => { next: ServiceDefinition | null, current: ServiceEntry | null } | null): Promise<ServiceChange | null> {
    if (source === 'file') throw new ServicesReadOnly()
    return await exclusive(async () => {
      for (let attempt = 1; ; attempt++) {
        const decided = decide()
        if (decided === null) return null
        const { next, current } = decided
        const diff = diffDefinitions(current?.definition ?? null, next)
        const action = next === null ? 'deleted' : current === null ? 'created' : Object.keys(diff).length === 0 ? 'unchanged' : 'updated'
        const at = new Date().toISOString()
        const preview = next === null ? null : { name, definition: next, version: current?.version ?? version, updated_at: current?.updated_at ?? at }
        if (dryRun || action === 'unchanged') return { action, service: preview, diff, dryRun, tableVersion: version }
        let written: number | null
        try {
          written = next === null
            ? await store.services.delete(name, version)
            : await store.services.put(name, next as Record<string, unknown>, at, version)
        } catch (err) {
          metrics.storeError('services.write')
          app.log.error({ err, event: 'services_store_error' }, 'service change failed: service store unavailable')
          throw new ServiceStoreUnavailable()
        }
        if (written === null || written === 0) {
          // Another instance changed the table first: decide again on its version.
          if (attempt >= MAX_WRITE_ATTEMPTS) throw new ServiceStoreUnavailable()
          await load().catch(() => { throw new ServiceStoreUnavailable() })
          continue
        }
        // The write was checked against `version`, so the store now holds exactly this.
        const entries = stored.filter((s) => s.name !== name)
        if (next !== null) entries.push({ name, definition: next as Record<string, unknown>, version: written, updated_at: at })
        apply(entries, written)
        app.log.info({ event: 'service_changed', service: name, action, user, diff, version: written }, `service ${name} ${action} by ${user} (table version ${written})`)
        return { action, service: applied.get(name) ?? null, diff, dryRun: false, tableVersion: written }
      }
    })
  }

  /** Checks `definition` against the gateway's own paths and the other services (409), and its retry (400). */
  function check (name: string, definition: ServiceDefinition): void {
    const [problem] = definitionProblems(definition, config.retry, '', jwtEnabled)
    if (problem !== undefined) throw problem.startsWith('prefix:') ? new ServiceConflict(problem) : new ValidationFailed(problem)
    const prefix = serviceFromDefinition(definition, config.retry, config.upstreamTimeoutMs).prefix
    const holder = tables.current.routes.find((r) => r.prefix === prefix && r.name !== name)
    if (holder !== undefined) throw new ServiceConflict(`prefix: "${prefix}" is already served by service "${holder.name}"`)
  }

  const api: Services = {
    source,
    get version () { return version },
    list: () => [...applied.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    get: (name) => applied.get(name) ?? null,
    async put (name, definition, opts) {
      return await write(name, opts.user, opts.dryRun, () => {
        check(name, definition)
        return { next: definition, current: applied.get(name) ?? null }
      }) as ServiceChange
    },
    async delete (name, opts) {
      return await write(name, opts.user, false, () => {
        const current = applied.get(name) ?? stored.find((s) => s.name === name)
        if (current === undefined) return null
        return { next: null, current: applied.get(name) ?? null }
      })
    },
    reloadFile () {
      if (source !== 'file') {
        app.log.warn({ event: 'services_reload_ignored' }, 'SIGHUP ignored: SERVICES_SOURCE=store (manage services through the admin API)')
        return false
      }
      const { services, problems } = reloadRoutesFile(config)
      if (problems.length > 0) {
        app.log.error({ event: 'services_reload_failed', problems }, `ROUTES_FILE is invalid; keeping the running service table (version ${version})`)
        return false
      }
      const before = applied
      const at = new Date().toISOString()
      const next = version + 1
      const entries = services.map((s): StoredService => {
        const old = before.get(s.name)
        const same = old !== undefined && Object.keys(diffDefinitions(old.definition, s.definition)).length === 0
        return same ? { ...old, definition: old.definition as Record<string, unknown> } : { name: s.name, definition: s.definition as Record<string, unknown>, version: next, updated_at: at }
      })
      if (!apply(entries, next)) return false
      logRemote(before)
      app.log.info({ event: 'services_reloaded', version: next, services: services.length }, `ROUTES_FILE reloaded: table version ${next}`)
      return true
    },
    sync
  }
  app.decorate('services', api)
  app.decorate('serviceTables', tables)
}, {
  name: 'services',
  fastify: '5.x',
  dependencies: ['config', 'store', 'api-keys', 'jwt', 'rate-limit', 'ip-rules', 'quotas', 'circuit-breakers', 'health-checks', 'gateway-metrics']
})
