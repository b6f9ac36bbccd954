// The one start-up line (docs/operations.md): where the gateway listens, which store, how many services and
// backends, whether admin auth is on. Never a password: a Redis URL is printed without its
// credentials, and the admin password is not part of the line at all.
import { isIPv4, type AddressInfo } from 'node:net'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { LogFn } from 'pino'
import type { Config, ServiceConfig } from '../lib/config.js'

/** A Redis URL without user name and password (`redis://:secret@h:6379/2` → `redis://h:6379/2`). */
export function redactRedisUrl (url: string): string {
  try {
    const u = new URL(url)
    u.username = ''
    u.password = ''
    return u.toString().replace(/\/$/, '')
  } catch {
    return '(invalid URL)'
  }
}

/** Which store, where: the SQLite file, the Redis URL (no credentials), or the Cluster seeds. */
export function describeStore (config: Config): string {
  if (config.storage === 'embedded') return `embedded (${config.dataDir}/gateway.db)`
  const r = config.redis
  if (r.clusterNodes !== null) return `redis cluster (seeds ${r.clusterNodes.map((n) => `${n.host}:${n.port}`).join(', ')})`
  if (r.url !== null) return `redis (${redactRedisUrl(r.url)})`
  return `redis (redis://${r.host}:${r.port}${r.db !== 0 ? `/${r.db}` : ''})`
}

export interface StartupFacts {
  event: 'gateway_started'
  address: string
  store: string
  services: number
  backends: number
  admin_auth: boolean
  /** The admin listener's URL when ADMIN_PORT is set; null when admin shares the public listener. */
  admin_address: string | null
}

/** The fields and the message of the start-up line, for `address` (e.g. http://0.0.0.0:8081). */
export function startupLine (config: Config, address: string, adminAddress: string | null = null, table: readonly ServiceConfig[] = config.services): { facts: StartupFacts, msg: string } {
  const services = table.length
  const backends = table.reduce((n, s) => n + s.backends.length, 0)
  const store = describeStore(config)
  const auth = config.admin.authEnabled ? `admin auth on (user ${config.admin.username})` : 'admin auth OFF'
  const where = config.host === '0.0.0.0' || config.host === '::' ? `${address} (all interfaces)` : address
  return {
    facts: { event: 'gateway_started', address, store, services, backends, admin_auth: config.admin.authEnabled, admin_address: adminAddress },
    msg: `gateway listening on ${where}; store ${store}; ${services} service${services === 1 ? '' : 's'}, ` +
      `${backends} backend${backends === 1 ? '' : 's'}; ${auth}` +
      (adminAddress === null ? '' : `; admin API and /metrics only on ${adminAddress}`)
  }
}

/** A host only this machine can reach: `localhost`, 127.0.0.0/8 or ::1. */
export function isLoopbackHost (host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || (isIPv4(h) && h.startsWith('127.')) || h.startsWith('::ffff:127.')
}

/**
 * The one warning for an admin API anyone who reaches the public listener can try passwords on:
 * HOST is not loopback, ADMIN_PORT is unset and admin auth is on (with it off, plugins/admin-auth.ts
 * already warns louder). null when there is nothing to say.
 */
export function adminExposureWarning (config: Config, address: string): string | null {
  if (config.adminListener !== null || !config.admin.authEnabled || isLoopbackHost(config.host)) return null
  return `the admin API is served on the public listener ${address}; set ADMIN_PORT (and ADMIN_HOST) to serve /admin and /metrics on their own listener`
}

const LISTEN_MARKER = '\u0000gateway-listen-text'

/**
 * `app.listen()` printing the one start-up line instead of Fastify's "Server listening at …" per
 * network interface. Fastify has no option to turn its lines off (fastify/help#641); its text goes
 * through `listenTextResolver`, so the text becomes a marker that the root logger drops while
 * listen runs. Every other line passes through untouched.
 */
export async function listenWithStartupLine (app: FastifyInstance, config: Config): Promise<string> {
  const log = app.log as FastifyBaseLogger & { info: LogFn }
  const info = log.info
  log.info = function (this: unknown, ...args: unknown[]) {
    if (args[0] === LISTEN_MARKER) return
    return (info as (...a: unknown[]) => void).apply(this, args)
  } as LogFn
  try {
    await app.listen({ host: config.host, port: config.port, listenTextResolver: () => LISTEN_MARKER })
  } finally {
    log.info = info
  }
  const bound = app.server.address() as AddressInfo
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  const address = `http://${host}:${bound.port}`
  // The admin listener (ADMIN_PORT) starts after the public one, so the line can name both.
  const adminAddress = app.adminListener === null ? null : await listenAdmin(app, config)
  // The table in use: with SERVICES_SOURCE=store it is what the store holds, not the routes file.
  const { facts, msg } = startupLine(config, address, adminAddress, app.serviceTables.current.routes.map((r) => r.service))
  app.log.info(facts, msg)
  const exposed = adminExposureWarning(config, address)
  if (exposed !== null) app.log.warn({ event: 'admin_on_public_listener', address }, exposed)
  return address
}

async function listenAdmin (app: FastifyInstance, config: Config): Promise<string> {
  try {
    return await (app.adminListener as NonNullable<FastifyInstance['adminListener']>).listen()
  } catch (err) {
    const admin = config.adminListener
    throw new Error(`cannot listen on ${admin?.host}:${admin?.port} (ADMIN_HOST/ADMIN_PORT): ${(err as Error).message}`, { cause: err })
  }
}
