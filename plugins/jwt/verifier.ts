// Verifies a compact JWS against its issuer's keys with jose, and remembers what it verified
// (docs/jwt.md#verification). The issuer is chosen by the token's (unverified) `iss` among the
// configured ones; jose then checks the signature, `iss`, `aud`, `exp`/`nbf` with the clock
// tolerance and the allowed algorithms. A verified token is cached, keyed by its SHA-256, until it
// expires (bounded, least recently used evicted), so a repeated token costs a hash and a lookup.
// Nothing here throws to the caller: every failure is an outcome, never a 500.
import { createHash } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload, type JWTVerifyOptions, type KeyObject } from 'jose'
import { LruMap } from 'toad-cache'
import type { IssuerConfig } from '../../lib/config.js'
import { headerSafe, isRefusedAlgorithm, scopesOf } from '../../lib/jwt.js'
import type { Consumer } from '../api-keys.js'
import type { KeySet } from './key-sets.js'

/** Every verification outcome: the label set of gateway_jwt_verifications_total. */
export const VERIFY_OUTCOMES = [
  'valid', 'expired', 'not_yet_valid', 'bad_signature', 'unknown_kid', 'wrong_issuer', 'wrong_audience',
  'bad_algorithm', 'malformed', 'no_keys'
] as const
export type VerifyOutcome = typeof VERIFY_OUTCOMES[number]
export type Failure = Exclude<VerifyOutcome, 'valid'>

export interface Verified {
  readonly ok: true
  readonly consumer: Consumer
  readonly scopes: ReadonlySet<string>
  /** Past this (epoch ms: `exp` plus the tolerance) the token is verified again, and refused. */
  readonly expiresAtMs: number
  readonly keySet: KeySet
  /** The key set's version it was verified with: a change of keys means verifying again. */
  readonly version: number
}

export interface Refused {
  readonly ok: false
  readonly outcome: Failure
  /** For `no_keys`: the Retry-After of the 503. */
  readonly retryAfter: number
  /** The key set (and its version) the refusal was decided with; null when no key was involved. */
  readonly keySet: KeySet | null
  readonly version: number
}

export type Verdict = Verified | Refused

export interface Issuer {
  readonly config: IssuerConfig
  readonly keys: KeySet
}

export interface VerifierOptions {
  clockToleranceSeconds: number
  consumerClaim: string
  forwardToken: boolean
  /** Verified tokens kept. */
  cacheSize?: number
  /** How long a verified token without `exp` is kept before it is verified again. */
  noExpiryTtlMs?: number
  /** Called for every refusal, and for a valid token when it was verified (not from the cache). */
  onOutcome: (outcome: VerifyOutcome) => void
}

const refused = (outcome: Failure, retryAfter = 0, keySet: KeySet | null = null, version = 0): Refused => ({ ok: false, outcome, retryAfter, keySet, version })
/**
 * Refusals that the same token meets again as long as the keys do not change: remembered, so a
 * client retrying an expired or forged token costs a lookup, not a signature check. Never
 * `unknown_kid` (a later refetch may find the key), `not_yet_valid` (time fixes it) or `no_keys`.
 */
const REMEMBERED: ReadonlySet<Failure> = new Set(['expired', 'bad_signature', 'wrong_issuer', 'wrong_audience', 'bad_algorithm', 'malformed'])
/** Longest consumer claim accepted: it becomes a bucket id, a log field and a header. */
const MAX_SUBJECT = 1024

/** jose's error codes, as outcomes (docs/jwt.md#failures). */
function classify (err: unknown): Failure {
  const e = err as { code?: string, claim?: string }
  switch (e.code) {
    case 'ERR_JWT_EXPIRED': return 'expired'
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'bad_signature'
    case 'ERR_JWKS_NO_MATCHING_KEY': return 'unknown_kid'
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED': return 'bad_algorithm'
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.claim === 'nbf') return 'not_yet_valid'
      if (e.claim === 'iss') return 'wrong_issuer'
      if (e.claim === 'aud') return 'wrong_audience'
      return 'malformed'
    default: return 'malformed'
  }
}

export class TokenVerifier {
  readonly #issuers: Map<string, Issuer & { options: JWTVerifyOptions, allowed: ReadonlySet<string>, headerIssuer: string }>
  readonly #opts: VerifierOptions
  readonly #cache: LruMap<Verified>
  readonly #refusals: LruMap<Refused>
  readonly #inflight = new Map<string, Promise<Verdict>>()
  readonly #noExpiryTtlMs: number

  constructor (issuers: readonly Issuer[], opts: VerifierOptions) {
    this.#opts = opts
    this.#cache = new LruMap<Verified>(opts.cacheSize ?? 10_000)
    this.#refusals = new LruMap<Refused>(opts.cacheSize ?? 10_000)
    this.#noExpiryTtlMs = opts.noExpiryTtlMs ?? 300_000
    this.#issuers = new Map(issuers.map((i) => [i.config.issuer, {
      ...i,
      allowed: new Set(i.config.algorithms),
      headerIssuer: headerSafe(i.config.issuer),
      options: {
        issuer: i.config.issuer,
        ...(i.config.audiences === null ? {} : { audience: i.config.audiences }),
        algorithms: i.config.algorithms,
        clockTolerance: opts.clockToleranceSeconds,
        requiredClaims: [opts.consumerClaim]
      }
    }]))
  }

  /** The verdict on a compact JWS: at once from the cache, else once verified. */
  check (token: string, now: number): Verdict | Promise<Verdict> {
    const hash = createHash('sha256').update(token).digest('base64')
    const hit = this.#cache.get(hash)
    if (hit !== undefined) {
      if (now < hit.expiresAtMs && hit.version === hit.keySet.version) return hit
      this.#cache.delete(hash)
    }
    const no = this.#refusals.get(hash)
    if (no !== undefined) {
      // Counted like any refusal: a client insisting with a bad token shows in the metrics.
      if (no.keySet === null || no.version === no.keySet.version) {
        this.#opts.onOutcome(no.outcome)
        return no
      }
      this.#refusals.delete(hash)
    }
    const running = this.#inflight.get(hash)
    if (running !== undefined) return running
    const p = this.#verify(token).then((verdict) => {
      this.#opts.onOutcome(verdict.ok ? 'valid' : verdict.outcome)
      if (verdict.ok) this.#cache.set(hash, verdict)
      else if (REMEMBERED.has(verdict.outcome)) this.#refusals.set(hash, verdict)
      return verdict
    }, () => {
      this.#opts.onOutcome('malformed')
      return refused('malformed')
    }).finally(() => this.#inflight.delete(hash))
    this.#inflight.set(hash, p)
    return p
  }

  async #verify (token: string): Promise<Verdict> {
    let alg: unknown
    let iss: unknown
    try {
      alg = decodeProtectedHeader(token).alg
      iss = decodeJwt(token).iss
    } catch {
      return refused('malformed')
    }
    if (typeof alg !== 'string') return refused('malformed')
    if (isRefusedAlgorithm(alg)) return refused('bad_algorithm')
    const issuer = typeof iss === 'string' ? this.#issuers.get(iss) : undefined
    if (issuer === undefined) return refused('wrong_issuer')
    if (!issuer.allowed.has(alg)) return refused('bad_algorithm')

    const keys = issuer.keys
    if (keys.keys === null) {
      // The first fetch is under way: wait for it (bounded by its timeout) rather than refuse.
      const pending = keys.pending
      if (pending !== null) await pending
      if (keys.keys === null) return refused('no_keys', keys.retryAfterSeconds())
    }
    let version = keys.version
    let result = await this.#attempt(token, issuer)
    if (result === 'unknown_kid') {
      // A rotated key: fetch the set again now (at most once per 30 s) and try once more.
      const refetch = keys.refetchForKid()
      if (refetch !== null) {
        await refetch
        version = keys.version
        result = await this.#attempt(token, issuer)
      }
    }
    if (typeof result === 'string') return refused(result, 0, keys, version)
    return this.#accept(result.payload, issuer, result.version)
  }

  async #attempt (token: string, issuer: Issuer & { options: JWTVerifyOptions }): Promise<{ payload: JWTPayload, version: number } | Failure> {
    const keys = issuer.keys
    const version = keys.version
    const getKey = keys.keys
    if (getKey === null) return 'unknown_kid'
    try {
      return { payload: (await jwtVerify(token, getKey, issuer.options)).payload, version }
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') return classify(err)
      // Several keys fit (no `kid`): jose hands them over one by one; the first that verifies wins.
      let last: Failure = 'bad_signature'
      for await (const key of err as AsyncIterable<KeyObject>) {
        try {
          return { payload: (await jwtVerify(token, key, issuer.options)).payload, version }
        } catch (e) {
          last = classify(e)
          if (last !== 'bad_signature') return last
        }
      }
      return last
    }
  }

  #accept (payload: JWTPayload, issuer: Issuer & { headerIssuer: string }, version: number): Verdict {
    const value = payload[this.#opts.consumerClaim]
    const subject = typeof value === 'string' ? value : typeof value === 'number' && Number.isFinite(value) ? String(value) : ''
    if (subject === '' || subject.length > MAX_SUBJECT) return refused('malformed')
    const iss = issuer.config.issuer
    const consumer: Consumer = Object.freeze({
      id: `jwt:${iss}:${subject}`,
      name: subject,
      rateLimit: null,
      burst: null,
      services: null,
      // Quotas are an API key's (docs/policies.md#quotas); a token consumer has none.
      quota: null,
      token: Object.freeze({ subject: headerSafe(subject), issuer: issuer.headerIssuer, forward: this.#opts.forwardToken })
    })
    const expiresAtMs = typeof payload.exp === 'number'
      ? (payload.exp + this.#opts.clockToleranceSeconds) * 1000
      : Date.now() + this.#noExpiryTtlMs
    return { ok: true, consumer, scopes: scopesOf(payload), expiresAtMs, keySet: issuer.keys, version }
  }
}
