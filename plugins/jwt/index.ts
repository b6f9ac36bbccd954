// JWT and OpenID Connect consumers (docs/jwt.md). When JWT_ISSUER or the routes file's `issuers`
// configure at least one issuer, a service that accepts `jwt` (its `authMethods`, default both)
// gets an authenticate hook that verifies `Authorization: Bearer <compact JWS>` and otherwise
// hands the request to the API-key hook. A valid token makes the consumer `jwt:<iss>:<sub>`: its
// own rate-limit bucket, its id in the access log, X-Consumer-Id toward the backend.
// Answers follow RFC 6750 section 3: 401 `error="invalid_token"`, 403 `error="insufficient_scope"`, in the
// gateway's JSON envelope; 503 with Retry-After while an issuer's keys were never fetched.
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import promClient from '@platformatic/prom-client'
import type { ServiceConfig } from '../../lib/config.js'
import { bearerToken, findCredential } from '../../lib/credentials.js'
import { API_KEY_PREFIX } from '../../lib/api-key-format.js'
import { AmbiguousToken, ApiKeyNotAccepted, InsufficientScope, InvalidToken, TokenKeysUnavailable, TokenRequired } from '../../lib/errors.js'
import { isCompactJws, missingScope } from '../../lib/jwt.js'
import { FETCH_OUTCOMES, jwksDispatcher, KeySet, type FetchOutcome } from './key-sets.js'
import { TokenVerifier, VERIFY_OUTCOMES, type Failure, type Verdict } from './verifier.js'

export interface JwtAuth {
  /** Whether any issuer is configured. */
  readonly enabled: boolean
  /** The service's authenticate hook: JWT when one is sent and accepted, else `keyHook`. */
  hookFor (service: ServiceConfig, keyHook: onRequestHookHandler): onRequestHookHandler
  /** Each issuer's key set (read by /ready-like checks and tests). */
  readonly keySets: ReadonlyMap<string, KeySet>
}

declare module 'fastify' {
  interface FastifyInstance {
    jwtAuth: JwtAuth
  }
}

const KEY_CHALLENGE = 'Key realm="gateway"'
const BEARER = 'Bearer realm="gateway"'

/** What the client reads in `error_description` and the envelope (never the token). */
const DESCRIPTIONS: Record<Failure, string> = {
  expired: 'it has expired',
  not_yet_valid: 'it is not valid yet (nbf)',
  bad_signature: 'its signature does not verify',
  unknown_kid: 'no key of its issuer matches its kid',
  wrong_issuer: 'its issuer (iss) is not accepted',
  wrong_audience: 'its audience (aud) is not accepted',
  bad_algorithm: 'its algorithm (alg) is not accepted',
  malformed: 'it is malformed or lacks a required claim',
  no_keys: 'its issuer\'s keys are not available yet'
}

/** The Bearer value when it is shaped like a JWT and not a gateway key; else null. */
function jwtBearer (authorization: string | undefined): string | null {
  const token = bearerToken(authorization)
  if (token === null || token.startsWith(API_KEY_PREFIX) || !isCompactJws(token)) return null
  return token
}

/** More than one Authorization line: which one would be the credential is ambiguous. */
function repeatedAuthorization (rawHeaders: readonly string[]): boolean {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (name.length === 13 && name.toLowerCase() === 'authorization' && ++n > 1) return true
  }
  return false
}

export default fp(async function jwt (app) {
  const { config, gatewayMetrics } = app
  const settings = config.jwt
  const enabled = settings.issuers.length > 0
  const keySets = new Map<string, KeySet>()

  if (!enabled) {
    app.decorate('jwtAuth', { enabled, hookFor: (_service: ServiceConfig, keyHook: onRequestHookHandler) => keyHook, keySets } satisfies JwtAuth)
    return
  }

  const registers = [gatewayMetrics.registry]
  const verifications = new promClient.Counter({
    name: 'gateway_jwt_verifications_total',
    help: 'JWT tokens checked, by outcome (every refusal; a valid token only when its signature was checked, not from the cache)',
    labelNames: ['outcome'],
    registers
  })
  const byOutcome = new Map(VERIFY_OUTCOMES.map((o) => [o, verifications.labels(o)]))
  for (const c of byOutcome.values()) c.inc(0)
  const fetches = new promClient.Counter({
    name: 'gateway_jwt_jwks_fetches_total',
    help: 'JWKS (and OpenID Connect discovery) fetches by issuer and outcome',
    labelNames: ['issuer', 'outcome'],
    registers
  })
  for (const i of settings.issuers) for (const o of FETCH_OUTCOMES) fetches.inc({ issuer: i.issuer, outcome: o }, 0)

  const dispatcher = jwksDispatcher()
  const log = app.log.child({ plugin: 'jwt' })
  for (const issuer of settings.issuers) {
    keySets.set(issuer.issuer, new KeySet({
      issuer: issuer.issuer,
      jwksUrl: issuer.jwksUrl,
      dispatcher,
      log,
      onFetch: (iss: string, outcome: FetchOutcome) => fetches.inc({ issuer: iss, outcome })
    }))
  }
  const verifier = new TokenVerifier(settings.issuers.map((c) => ({ config: c, keys: keySets.get(c.issuer) as KeySet })), {
    clockToleranceSeconds: settings.clockToleranceSeconds,
    consumerClaim: settings.consumerClaim,
    forwardToken: settings.forwardToken,
    onOutcome: (outcome) => byOutcome.get(outcome)?.inc()
  })

  if (settings.refusedAlgorithms.length > 0) {
    log.warn({ event: 'jwt_algorithms_refused', algorithms: settings.refusedAlgorithms },
      `JWT algorithms ${settings.refusedAlgorithms.join(', ')} are never accepted (none and HMAC); ignored`)
  }
  log.info({ event: 'jwt_enabled', issuers: settings.issuers.map((i) => i.issuer) }, `JWT consumers accepted from ${settings.issuers.length} issuer(s)`)
  // Start-up never waits for an IdP: the first fetches run in the background.
  app.addHook('onReady', async () => { for (const k of keySets.values()) k.start() })
  app.addHook('onClose', async () => {
    for (const k of keySets.values()) k.close()
    // A key fetch in flight never holds up shutdown.
    await dispatcher.destroy()
  })

  function hookFor (service: ServiceConfig, keyHook: onRequestHookHandler): onRequestHookHandler {
    if (service.auth === 'none' || !service.authMethods.includes('jwt')) return keyHook
    const acceptsKey = service.authMethods.includes('apikey')
    const required = config.apiKeyRequired || service.auth === 'required'
    const scopes = service.scopes
    const scopeChallenge = `${BEARER}, error="insufficient_scope", scope="${scopes.join(' ')}"`
    const bothChallenges = `${KEY_CHALLENGE}, ${BEARER}`

    function decide (verdict: Verdict, request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
      if (!verdict.ok) {
        if (verdict.outcome === 'no_keys') {
          reply.header('retry-after', String(verdict.retryAfter))
          return done(new TokenKeysUnavailable())
        }
        reply.header('www-authenticate', `${BEARER}, error="invalid_token", error_description="The token is invalid: ${DESCRIPTIONS[verdict.outcome]}"`)
        return done(new InvalidToken(DESCRIPTIONS[verdict.outcome]))
      }
      if (scopes.length > 0) {
        const missing = missingScope(scopes, verdict.scopes)
        if (missing !== null) {
          reply.header('www-authenticate', scopeChallenge)
          return done(new InsufficientScope(missing))
        }
      }
      request.consumer = verdict.consumer
      done()
    }

    return function authenticate (request, reply, done) {
      const headers = request.headers
      const token = jwtBearer(headers.authorization)
      if (token === null) {
        if (acceptsKey) {
          if (required && headers['x-api-key'] === undefined && headers.authorization === undefined) {
            reply.header('www-authenticate', bothChallenges)
            return done(new TokenRequired('an API key (X-API-Key) or a JWT (Authorization: Bearer)'))
          }
          return keyHook.call(this, request, reply, done)
        }
        // A JWT-only service: a gateway key is refused, not silently ignored.
        if (findCredential(headers, request.raw.rawHeaders).kind !== 'none') {
          reply.header('www-authenticate', BEARER)
          return done(new ApiKeyNotAccepted())
        }
        if (!required) return done()
        reply.header('www-authenticate', BEARER)
        return done(new TokenRequired('a JWT as Authorization: Bearer'))
      }
      if (headers['x-api-key'] !== undefined || repeatedAuthorization(request.raw.rawHeaders)) {
        reply.header('www-authenticate', `${BEARER}, error="invalid_request"`)
        return done(new AmbiguousToken())
      }
      const verdict = verifier.check(token, Date.now())
      if (verdict instanceof Promise) verdict.then((v) => decide(v, request, reply, done), () => done(new InvalidToken(DESCRIPTIONS.malformed)))
      else decide(verdict, request, reply, done)
    }
  }

  app.decorate('jwtAuth', { enabled, hookFor, keySets } satisfies JwtAuth)
}, { name: 'jwt', fastify: '5.x', dependencies: ['config', 'gateway-metrics', 'api-keys'] })
