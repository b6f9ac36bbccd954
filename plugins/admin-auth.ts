// Basic auth for the admin API (SPEC §9). Not global: routes/admin/index.ts registers this inside
// the `/admin` scope, and fastify-plugin makes its onRequest hook apply to that scope (and only
// that scope). Every failure — missing or malformed header, wrong credentials — answers the
// gateway's 401 envelope with `WWW-Authenticate`; more than MAX_FAILURES from one client IP in a
// minute answer 429 until the window ends, right password included. The counter lives in
// `store.failures`, so on Redis it is shared by every instance.
import basicAuth from '@fastify/basic-auth'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AdminThrottled, AdminUnauthorized } from '../src/errors.js'
import { MemoryFailureCounter } from './store/embedded.js'

export const ADMIN_CHALLENGE = 'Basic realm="gateway", charset="UTF-8"'
export const MAX_FAILURES = 10
export const FAILURE_WINDOW_MS = 60_000

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest()

/** What validate() rejects with: carries the user name for the log line (never the password). */
class BadCredentials extends Error {
  readonly user: string
  constructor (user: string) {
    super('bad admin credentials')
    this.user = user.slice(0, 64)
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
      if (!(userOk && passwordOk)) throw new BadCredentials(username)
    }
  })

  const throttleId = (ip: string) => `admin-auth:${ip}`

  async function count (op: 'hit' | 'peek', ip: string): Promise<{ count: number, resetMs: number }> {
    try {
      return op === 'hit' ? await failures.hit(throttleId(ip), FAILURE_WINDOW_MS) : await failures.peek(throttleId(ip))
    } catch (err) {
      metrics.storeError(`failures.${op}`)
      fastify.log.warn({ err, event: 'admin_auth_store_unavailable' }, 'failed-login counter unavailable; counting in process')
      return op === 'hit' ? await fallback.hit(throttleId(ip), FAILURE_WINDOW_MS) : await fallback.peek(throttleId(ip))
    }
  }

  function throttled (request: FastifyRequest, reply: FastifyReply, resetMs: number, user?: string): FastifyError {
    reply.header('retry-after', String(Math.max(1, Math.ceil(resetMs / 1000))))
    request.log.warn({ event: 'admin_auth_throttled', ip: request.ip, user }, 'admin login throttled: too many failures from this address')
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
    const before = await count('peek', ip)
    if (before.count > MAX_FAILURES) throw throttled(request, reply, before.resetMs)

    const err = await check(request, reply)
    if (err === undefined) return

    const user = err instanceof BadCredentials ? err.user : undefined
    const after = await count('hit', ip)
    if (after.count > MAX_FAILURES) {
      reply.removeHeader('www-authenticate')
      throw throttled(request, reply, after.resetMs, user)
    }
    request.log.warn({ event: 'admin_auth_failed', ip, user, reason: err instanceof BadCredentials ? 'bad credentials' : 'missing or malformed Authorization header' },
      'admin authentication failed')
    reply.header('www-authenticate', ADMIN_CHALLENGE)
    throw new AdminUnauthorized()
  })
}

export default fp(adminAuth, { name: 'admin-auth', dependencies: ['store', 'gateway-metrics'] })
