// The RFC 9111 decisions of the response cache (docs/caching.md#what-is-stored), taken by
// http-cache-semantics: whether a response may be stored, how long it is fresh, whether a stored
// response satisfies a request (Vary included), its Age. What is ours: the gateway's stricter
// storage rules (only explicitly fresh responses, or `ttlSeconds`; never Set-Cookie), the cache
// key, and the Host the library matches on, normalised since services are routed by path.
import type { IncomingHttpHeaders } from 'node:http'
import CachePolicy from 'http-cache-semantics'
import type { CacheConfig } from '../../lib/config.js'
import { isGatewayBearer } from '../../lib/credentials.js'
import type { CacheEntry } from './types.js'

/**
 * The Host every policy sees: instances behind a load balancer, reached by different names, share
 * entries, and a client's Host never selects what it gets.
 */
const CACHE_HOST = 'gateway'

/** A shared cache, no heuristic freshness (Last-Modified alone stores nothing), no `immutable` floor. */
const OPTIONS: CachePolicy.Options = { shared: true, cacheHeuristic: 0, immutableMinTimeToLive: 0 }

/**
 * The heuristically cacheable statuses (RFC 9110 section 15.1) this cache stores: 206 is left out, as
 * range requests are not served from the cache.
 */
const STORABLE_STATUS = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])

export type PolicyRequest = CachePolicy.Request

/**
 * The request as the policy sees it: the key as its URL, the normalised Host, no gateway key in
 * Authorization (the gateway's own credential is not the backend's business), and the consumer
 * fields the backend was sent, so a response may `Vary: X-Consumer-Id`.
 */
export function policyRequest (method: string, key: string, given: IncomingHttpHeaders, consumer: { id: string, name: string } | null): PolicyRequest {
  const headers: CachePolicy.Headers = {}
  for (const name in given) {
    if (name === 'host' || name === 'x-api-key' || name.startsWith('x-consumer-')) continue
    const value = given[name]
    if (name === 'authorization' && isGatewayBearer(value as string)) continue
    headers[name] = value
  }
  headers.host = CACHE_HOST
  if (consumer !== null) {
    headers['x-consumer-id'] = consumer.id
    headers['x-consumer-name'] = consumer.name
  }
  // A HEAD is answered from the GET's entry: the policy matches methods exactly.
  return { method: method === 'HEAD' ? 'GET' : method, url: key, headers }
}

/** `<service>:<gateway path>[?<query without gateway keys>]` */
export function cacheKey (service: string, pathAndQuery: string): string {
  return `${service}:${pathAndQuery}`
}

/**
 * Which variant of a URL a request selects: the values of the fields `vary` names (a field the
 * request lacks is told apart from one it sent empty, as the library's own Vary match does).
 */
export function variantOf (vary: string | string[] | undefined, headers: CachePolicy.Headers): string {
  if (vary === undefined) return ''
  let out = ''
  for (const raw of String(vary).toLowerCase().split(',')) {
    const name = raw.trim()
    if (name === '') continue
    const value = headers[name]
    out += value === undefined ? `${name}\n` : `${name}=${String(value)}\n`
  }
  return out
}

export interface StorageDecision {
  policy: CachePolicy
  /** Epoch ms until which the entry is kept (CacheEntry.expiresAt). */
  expiresAt: number
  /** Epoch ms until which it may answer instead of an error: its freshness plus its stale-if-error window. */
  staleIfErrorUntil: number
}

/**
 * How long past its freshness an entry with a validator (ETag, Last-Modified) is kept so that it
 * can be revalidated rather than fetched again whole: as long again as it was fresh, within these
 * bounds (seconds). The embedded store's byte bound and Redis's maxmemory still evict it first.
 */
const REVALIDATION_KEEP_MIN_S = 60
const REVALIDATION_KEEP_MAX_S = 86_400

/**
 * What rules a response out before any policy is built: a status never stored, `Set-Cookie`, or
 * nothing that could make it fresh (no Cache-Control, no Expires, no ttlSeconds; no heuristics).
 * The common uncacheable answer costs no policy, nor the policy's view of the request.
 */
export function neverStored (status: number, given: Record<string, string | string[] | undefined>, settings: CacheConfig): boolean {
  if (!STORABLE_STATUS.has(status) || given['set-cookie'] !== undefined) return true
  return settings.ttlSeconds === 0 && given['cache-control'] === undefined && given.expires === undefined
}

/** Removes one directive from a Cache-Control value. */
function withoutDirective (cc: string, directive: string): string {
  return cc.split(',').map((d) => d.trim()).filter((d) => d.toLowerCase().split('=')[0] !== directive).join(', ')
}

/**
 * Whether (and until when) a response may be stored: RFC 9111 section 3 by the library (no-store,
 * private, Authorization without public / s-maxage / must-revalidate, request no-store), plus the
 * gateway's rules: a status from STORABLE_STATUS, no Set-Cookie, no `Vary: *`, and fresh by
 * s-maxage / max-age / Expires, or by the service's `ttlSeconds` when it states no freshness.
 */
export function storageDecision (req: PolicyRequest, status: number, given: Record<string, string | string[] | undefined>, settings: CacheConfig): StorageDecision | null {
  if (neverStored(status, given, settings)) return null
  const vary = given.vary
  if (vary !== undefined && String(vary).split(',').some((v) => v.trim() === '*')) return null
  const headers = given as CachePolicy.Headers
  const original = new CachePolicy(req, { status, headers }, OPTIONS)
  if (!original.storable()) return null
  const cc = original.toObject().rescc
  const explicit = cc['s-maxage'] !== undefined || cc['max-age'] !== undefined || headers.expires !== undefined
  let policy = original
  let lookup: CachePolicy.Headers | null = null
  // The library never reuses a must-revalidate response, even fresh; RFC 9111 section 5.2.2.2 only
  // forbids reusing it once stale. Its freshness is what we keep (and no stale-if-error).
  if (cc['must-revalidate'] !== undefined) lookup = { ...headers, 'cache-control': withoutDirective(String(headers['cache-control']), 'must-revalidate') }
  if (!explicit && settings.ttlSeconds > 0) {
    const base = lookup ?? headers
    const given = base['cache-control'] === undefined || base['cache-control'] === '' ? '' : `${String(base['cache-control'])}, `
    lookup = { ...base, 'cache-control': `${given}max-age=${settings.ttlSeconds}` }
  }
  if (lookup !== null) {
    // Storability was decided above, on what the backend said; the lookup policy only keeps freshness.
    const { authorization, ...rest } = req.headers
    policy = new CachePolicy(authorization === undefined ? req : { ...req, headers: rest }, { status, headers: lookup }, OPTIONS)
  }
  const freshFor = policy.maxAge() - policy.age()
  if (freshFor <= 0) return null
  const now = Date.now()
  const staleIfErrorUntil = now + Math.floor((freshFor + staleIfErrorSeconds(cc, settings)) * 1000)
  const validated = headers.etag !== undefined || headers['last-modified'] !== undefined
  const keep = Math.min(Math.max(policy.maxAge(), REVALIDATION_KEEP_MIN_S), REVALIDATION_KEEP_MAX_S)
  const expiresAt = validated ? Math.max(staleIfErrorUntil, now + Math.floor((freshFor + keep) * 1000)) : staleIfErrorUntil
  return { policy, expiresAt, staleIfErrorUntil }
}

/**
 * How long past freshness an entry may stand in for an error: the response's own `stale-if-error`
 * (RFC 5861), else the service's `staleIfErrorSeconds` unless the response forbids serving it
 * stale (must-revalidate, proxy-revalidate, s-maxage: RFC 9111 section 4.2.4).
 */
function staleIfErrorSeconds (cc: Record<string, string>, settings: CacheConfig): number {
  const own = Number(cc['stale-if-error'])
  if (Number.isFinite(own) && own > 0) return Math.max(own, 0)
  if (cc['must-revalidate'] !== undefined || cc['proxy-revalidate'] !== undefined || cc['s-maxage'] !== undefined || cc['no-cache'] !== undefined) return 0
  return settings.staleIfErrorSeconds
}

export interface Selection {
  /** An entry that answers the request now, without the backend. */
  fresh: { entry: CacheEntry, policy: CachePolicy } | null
  /** The request's variant when it cannot answer now (stale, or the request asked for no-cache). */
  fallback: { entry: CacheEntry, policy: CachePolicy } | null
}

/**
 * What the library said about an entry for a plain request (no Cache-Control, no Pragma): the
 * variant that request selected, and until when (epoch ms) the entry is fresh. For such requests
 * its answer depends on nothing else (URL, Host and method are fixed by the key), so a later plain
 * request of the same variant before then gets the same answer without asking again: a hit then
 * skips the library's evaluation, which builds a full set of response headers we never use.
 */
interface Verdict { readonly policy: CachePolicy, readonly variant: string, readonly freshUntil: number }
const verdicts = new WeakMap<CacheEntry, Verdict>()

/** Picks, among a URL's variants, the one that answers `req` (RFC 9111 section 4). */
/** Nothing stored for the request (shared: a miss allocates no selection). */
export const NOTHING_FOUND: Selection = Object.freeze({ fresh: null, fallback: null })

export function select (entries: CacheEntry[], req: PolicyRequest): Selection {
  if (entries.length === 0) return NOTHING_FOUND
  const plain = req.headers['cache-control'] === undefined && req.headers.pragma === undefined
  const now = Date.now()
  let fallback: Selection['fallback'] = null
  for (const entry of entries) {
    const known = verdicts.get(entry)
    if (plain && known !== undefined && now < known.freshUntil && known.variant === variantOf(entry.policy.resh.vary, req.headers)) {
      return { fresh: { entry, policy: known.policy }, fallback: null }
    }
    const policy = known?.policy ?? CachePolicy.fromObject(entry.policy)
    if (policy.satisfiesWithoutRevalidation(req)) {
      if (plain) verdicts.set(entry, { policy, variant: variantOf(entry.policy.resh.vary, req.headers), freshUntil: now + (policy.maxAge() - policy.age()) * 1000 })
      return { fresh: { entry, policy }, fallback: null }
    }
    if (fallback === null && entry.variant === variantOf(entry.headers.vary, req.headers)) fallback = { entry, policy }
  }
  return { fresh: null, fallback }
}

/** The Age an answer from `policy` carries: whole seconds (RFC 9111 section 5.1). */
export function ageOf (policy: CachePolicy): string {
  return String(Math.max(0, Math.floor(policy.age())))
}

/**
 * Whether a conditional request is answered 304 by a stored 200 (RFC 9110 section 13.1.2, section 13.1.3):
 * If-None-Match by weak comparison, else If-Modified-Since against Last-Modified.
 */
export function notModified (given: IncomingHttpHeaders, entry: CacheEntry): boolean {
  if (entry.status !== 200) return false
  const inm = given['if-none-match']
  if (inm !== undefined) {
    const etag = entry.headers.etag
    if (typeof etag !== 'string') return false
    if (inm.trim() === '*') return true
    const weak = (t: string) => t.trim().replace(/^W\//, '')
    return inm.split(',').some((t) => weak(t) === weak(etag))
  }
  const ims = given['if-modified-since']
  const lm = entry.headers['last-modified']
  if (ims === undefined || typeof lm !== 'string') return false
  const since = Date.parse(ims)
  const modified = Date.parse(lm)
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since
}
