// The request target on its way to a backend (docs/proxying.md): pure functions, no Fastify.
import { API_KEY_LENGTH, API_KEY_PREFIX, holdsApiKey } from '../../lib/api-key-format.js'
import { decodeEscapes } from '../../lib/percent-decode.js'

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
 * The query string without any part that holds a gateway key: as a value, a name or a bare
 * parameter (`?k=gw_…`, `?gw_…=`, `?gw_…`), percent-encoded or not (`%67%77%5F…`, `gw%5F…`, even
 * `%2567…` for a backend that decodes twice), alone or inside a longer value. A key put in a URL
 * must not reach the backend (docs/architecture.md). Every other part is kept byte for byte, in
 * order. `query` excludes the `?`; the result too ('' when nothing is left).
 */
export function withoutKeyParams (query: string): string {
  if (query.length < API_KEY_LENGTH || !(query.includes('%') || query.includes(API_KEY_PREFIX))) return query
  const parts = query.split('&')
  const kept = parts.filter((part) => !holdsApiKey(decodeEscapes(part)))
  return kept.length === parts.length ? query : kept.join('&')
}
