// The request target on its way to a backend (SPEC §4): pure functions, no Fastify.
import { API_KEY_PREFIX } from '../../src/api-key-format.js'

const UNRESERVED = /^[A-Za-z0-9\-._~]$/

/**
 * The path with percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2: `%75` and `u`
 * are the same path), so `/api/%75sers` is routed, checked and forwarded as `/api/users`. Other
 * escapes (`%2F`, `%20`…) stay as sent.
 */
export function normalizePath (path: string): string {
  if (!path.includes('%')) return path
  return path.replace(/%([0-9A-Fa-f]{2})/g, (escape: string, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16))
    return UNRESERVED.test(c) ? c : escape.toUpperCase()
  })
}

/**
 * Whether a (normalized) path may be forwarded: no `.` or `..` segment, as sent or once decoded
 * (`..%2F` is `../` to a backend that decodes), and no backslash, which some backends treat as a
 * separator. Dots inside a segment (`/..hidden`, `/a../b`) are names.
 */
export function isSafePath (path: string): boolean {
  // normalizePath upper-cases escapes, so `%5C` is the one encoded form of a backslash.
  if (path.includes('\\') || path.includes('%5C')) return false
  if (!path.includes('.')) return true
  if (hasDotSegment(path)) return false
  if (!path.includes('%')) return true
  let decoded: string
  try {
    decoded = decodeURIComponent(path)
  } catch {
    return false
  }
  return !decoded.includes('\\') && !hasDotSegment(decoded)
}

function hasDotSegment (path: string): boolean {
  for (const segment of path.split('/')) if (segment === '.' || segment === '..') return true
  return false
}

/** The path a backend sees: the prefix removed when the service strips it (`/` when nothing is left). */
export function stripPrefix (path: string, prefix: string): string {
  if (prefix === '/') return path
  const rest = path.slice(prefix.length)
  return rest === '' ? '/' : rest
}

/**
 * The query string without parameters whose value is a gateway key (SPEC §4: a key put in a URL
 * must not reach the backend). `query` excludes the `?`; the result too ('' when nothing is left).
 */
export function withoutKeyParams (query: string): string {
  if (!mayHoldKey(query)) return query
  const kept: string[] = []
  for (const part of query.split('&')) {
    const eq = part.indexOf('=')
    const value = eq === -1 ? '' : decodeLoosely(part.slice(eq + 1))
    if (!value.startsWith(API_KEY_PREFIX)) kept.push(part)
  }
  return kept.join('&')
}

/** Cheap pre-check: `gw_`, or its encoded forms `gw%5F`, anywhere in the text. */
function mayHoldKey (text: string): boolean {
  const lower = text.toLowerCase()
  return lower.includes(API_KEY_PREFIX) || lower.includes('gw%5f')
}

function decodeLoosely (value: string): string {
  if (!value.includes('%')) return value
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '))
  } catch {
    return value.replace(/%5f/gi, '_')
  }
}
