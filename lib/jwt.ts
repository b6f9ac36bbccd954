// Pure helpers of JWT consumers (docs/jwt.md): which algorithms may ever be accepted, what looks
// like a compact JWS, the scopes a token carries, how long a JWKS answer stays fresh. Signatures
// and keys are jose's business (plugins/jwt/), never this file's.
import CachePolicy from 'http-cache-semantics'

/**
 * Asymmetric JWS algorithms (RFC 7518 section 3, RFC 8037) the gateway may accept. `none` and every HMAC
 * (`HS*`) are refused whatever is configured: with a public key set, an HMAC "verified" with the
 * public key as its secret is the classic algorithm-confusion forgery.
 */
export const SUPPORTED_ALGORITHMS: readonly string[] = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'
]

/** `none` or an HMAC algorithm: never accepted, whatever the configuration says. */
export function isRefusedAlgorithm (alg: string): boolean {
  return alg.toLowerCase() === 'none' || /^hs\d+$/i.test(alg)
}

/** Splits a configured list into what is allowed, what is refused (none/HS*) and what is unknown. */
export function partitionAlgorithms (list: readonly string[]): { allowed: string[], refused: string[], unknown: string[] } {
  const allowed: string[] = []
  const refused: string[] = []
  const unknown: string[] = []
  for (const alg of new Set(list)) {
    if (isRefusedAlgorithm(alg)) refused.push(alg)
    else if (SUPPORTED_ALGORITHMS.includes(alg)) allowed.push(alg)
    else unknown.push(alg)
  }
  return { allowed, refused, unknown }
}

/** Whether a Bearer value is shaped like a compact JWS: three base64url segments (RFC 7515 section 7.1). */
export function isCompactJws (token: string): boolean {
  let dots = 0
  let segment = 0
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i)
    if (c === 0x2e) {
      // The header and payload are never empty; the signature may be only for alg "none".
      if (segment === 0) return false
      dots++
      segment = 0
      continue
    }
    const b64url = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f
    if (!b64url) return false
    segment++
  }
  return dots === 2
}

/** The scopes a token grants: `scope` (space-separated, RFC 8693 section 4.2) and `scp` (array or string). */
export function scopesOf (claims: Record<string, unknown>): Set<string> {
  const scopes = new Set<string>()
  const add = (value: unknown): void => {
    if (typeof value === 'string') {
      for (const s of value.split(' ')) if (s !== '') scopes.add(s)
    } else if (Array.isArray(value)) {
      for (const s of value) if (typeof s === 'string' && s !== '') scopes.add(s)
    }
  }
  add(claims.scope)
  add(claims.scp)
  return scopes
}

/** The first of `required` that `granted` lacks, or null when every one is granted. */
export function missingScope (required: readonly string[], granted: ReadonlySet<string>): string | null {
  for (const scope of required) if (!granted.has(scope)) return scope
  return null
}

export interface RefreshBounds {
  /** Used when the answer says nothing about its freshness (no max-age, no Expires). */
  defaultMs: number
  minMs: number
  maxMs: number
}

/**
 * How long a JWKS answer stays fresh, from its caching headers as RFC 9111 reads them (private
 * cache: `max-age`, else `Expires`, minus `Age`); `defaultMs` when it gives no freshness at all,
 * and always within [minMs, maxMs] so a `max-age=0` cannot make the gateway poll its IdP.
 */
export function refreshDelayMs (url: string, status: number, headers: Record<string, string | string[] | undefined>, bounds: RefreshBounds): number {
  const policy = new CachePolicy({ url, method: 'GET', headers: {} }, { status, headers: headers as Record<string, string> }, { shared: false })
  // HTTP freshness is in whole seconds; age() also counts the milliseconds since the answer was read.
  const fresh = Math.round(policy.maxAge() - policy.age()) * 1000
  const ms = fresh > 0 ? fresh : bounds.defaultMs
  return Math.min(bounds.maxMs, Math.max(bounds.minMs, Math.round(ms)))
}

/**
 * A claim value as an HTTP field value: printable ASCII is sent as it is, anything else
 * percent-encoded, so a subject with a line break or non-Latin characters can never break or
 * inject a header toward the backend.
 */
export function headerSafe (value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value)
}
