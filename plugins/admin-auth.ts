// Basic auth for the admin API (docs/admin-api.md#authentication-and-errors). Not global: routes/admin/index.ts registers this inside
// the `/admin` scope, and fastify-plugin makes its onRequest hook apply to that scope (and only
// that scope). Every failure — missing or malformed header, wrong credentials — answers the
// gateway's 401 envelope with `WWW-Authenticate`; once MAX_FAILURES attempts from one client IP
// failed in a minute, every further attempt answers 429 until the window ends, right password
// included, without being compared. The counter lives in `store.failures`, so on Redis it is
// shared by every instance.
import basicAuth from '@fastify/basic-auth'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AdminThrottled, AdminUnauthorized } from '../lib/errors.js'
import { MemoryFailureCounter } from './store/index.js'
import type { Reservation } from './store/types.js'
import type { StoreOperation } from './gateway-metrics.js'

export const ADMIN_CHALLENGE = 'Basic realm="gateway", charset="UTF-8"'
export const MAX_FAILURES = 10
export const FAILURE_WINDOW_MS = 60_000

/** The failure counter's id for a client address. */
export const adminThrottleKey = (ip: string): string => `admin-auth:${ip}`

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest()

/** What validate() rejects with: whether the user name was the admin's, for the log line. */
class BadCredentials extends Error {
  readonly userKnown: boolean
  constructor (userKnown: boolean) {
    super('bad admin credentials')
    this.userKnown = userKnown
  }
}

async function adminAuth (fastify: FastifyInstance): Promise<void> {
  const { admin } = fastify.config
  if (!admin.authEnabled) {
    fastify.log.warn({ event: 'admin_auth_disabled' },
      'ADMIN AUTH IS DISABLED (ADMIN_AUTH_ENABLED=false): anyone who reaches /admin can create and revoke API keys. Never run this in production.')
    return
  }

  const userHash = sha256(admin.username)
  const passwordHash = sha256(admin.password)
  const failures = fastify.store.failures
  const metrics = fastify.gatewayMetrics
  // Used only while the store is unreachable, so the throttle never silently disappears.
  const fallback = new MemoryFailureCounter()

  await fastify.register(basicAuth, {
    authenticate: { realm: 'gateway' },
    async validate (username: string, password: string) {
      // Both sides hashed to 32 bytes and both compared, so timing reveals neither length nor match.
      const userOk = timingSafeEqual(sha256(username), userHash)
      const passwordOk = timingSafeEqual(sha256(password), passwordHash)
      if (!(userOk && passwordOk)) throw new BadCredentials(userOk)
    }
  })

  /**
   * Reserves the attempt before any comparison (docs/admin-api.md#authentication-and-errors), in the shared store, or in process while
   * the store is unreachable so the throttle never silently disappears. `release` gives it back.
   */
  async function reserve (ip: string): Promise<Reservation & { release: () => Promise<void> }> {
    const id = adminThrottleKey(ip)
    try {
      const r = await failures.reserve(id, MAX_FAILURES, FAILURE_WINDOW_MS)
      return { ...r, release: () => failures.release(id).catch((err: unknown) => { storeFailed('failures.release', err) }) }
    } catch (err) {
      storeFailed('failures.reserve', err)
      const r = await fallback.reserve(id, MAX_FAILURES, FAILURE_WINDOW_MS)
      return { ...r, release: () => fallback.release(id) }
    }
  }

  function storeFailed (operation: StoreOperation, err: unknown): void {
    metrics.storeError(operation)
    fastify.log.warn({ err, event: 'admin_auth_store_unavailable' }, 'failed-login counter unavailable; counting in process')
  }

  /**
   * The user name as a log line may carry it: only the configured one. Anything else typed there
   * may be a password in the wrong field (`pw-Secret-123`), so it is never logged, only that it
   * was not the admin user.
   */
  function userFields (known: boolean | undefined): { user: string } | { user_known: false } | undefined {
    if (known === undefined) return undefined
    return known ? { user: admin.username } : { user_known: false }
  }

  function isAdminUser (user: string | undefined): boolean | undefined {
    return user === undefined ? undefined : timingSafeEqual(sha256(user), userHash)
  }

  function throttled (request: FastifyRequest, reply: FastifyReply, resetMs: number): FastifyError {
    reply.header('retry-after', String(Math.max(1, Math.ceil(resetMs / 1000))))
    request.log.warn({ event: 'admin_auth_throttled', ip: request.ip, ...userFields(isAdminUser(basicUser(request.headers.authorization))) },
      'admin login throttled: too many failures from this address')
    return new AdminThrottled()
  }

  function check (request: FastifyRequest, reply: FastifyReply): Promise<Error | undefined> {
    // Two Authorization lines: Node keeps the first silently; refuse instead of guessing.
    let lines = 0
    const raw = request.raw.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 13 && raw[i].toLowerCase() === 'authorization') lines++
    if (lines > 1) return Promise.resolve(new Error('duplicate Authorization header'))
    return new Promise((resolve) => {
      fastify.basicAuth(request, reply, (err?: Error) => resolve(err))
    })
  }

  fastify.addHook('onRequest', async function adminAuthHook (request, reply) {
    const ip = request.ip
    // Every attempt, whatever its form, takes one of the address's MAX_FAILURES before anything
    // is compared; a right password gives it back. Pipelined or concurrent attempts and other
    // instances all take from the same atomic counter, so the 11th is refused unchecked.
    const attempt = await reserve(ip)
    if (!attempt.allowed) throw throttled(request, reply, attempt.resetMs)

    const err = await check(request, reply)
    if (err === undefined) {
      await attempt.release()
      return
    }

    const known = err instanceof BadCredentials ? err.userKnown : undefined
    request.log.warn({ event: 'admin_auth_failed', ip, ...userFields(known), reason: err instanceof BadCredentials ? 'bad credentials' : 'missing or malformed Authorization header' },
      'admin authentication failed')
    reply.header('www-authenticate', ADMIN_CHALLENGE)
    throw new AdminUnauthorized()
  })
}

/** The user name of a Basic header, for the throttle's log line only (never for a decision). */
function basicUser (header: string | undefined): string | undefined {
  const m = /^basic[ \t]+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '')
  if (m === null) return undefined
  const decoded = Buffer.from(m[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon === -1 ? undefined : decoded.slice(0, colon)
}

export default fp(adminAuth, { name: 'admin-auth', fastify: '5.x', dependencies: ['config', 'store', 'gateway-metrics'] })
