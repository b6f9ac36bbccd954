// What of a URL may be logged: the values of credential-like query parameters and anything shaped
// like a gateway key, encoded or not, are replaced (docs/operations.md#logs). Pure functions: the
// access log and the WebSocket tunnel's close line both use them.
import { API_KEY_PREFIX } from './api-key-format.js'
import { decodeEscapes } from './percent-decode.js'

export const REDACTED = '[REDACTED]'
/** Query parameters whose value is a credential (compared case-insensitively, after decoding). */
export const SECRET_PARAMS: ReadonlySet<string> = new Set([
  'apikey', 'api_key', 'api-key', 'x-api-key', 'key', 'token', 'access_token', 'refresh_token',
  'id_token', 'client_secret', 'password', 'secret', 'auth', 'authorization', 'signature', 'sig'
])
/** Longer URLs are cut: a log line is not the place for an 8 KB query string. */
export const MAX_LOGGED_URL = 2048

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
// A raw gateway key anywhere in the URL (a path segment, an oddly named parameter).
const KEY_SHAPE = new RegExp(escapeRe(API_KEY_PREFIX) + '[A-Za-z0-9_-]{16,}', 'g')

/** The URL as it may be logged: secret parameters' values and key-shaped strings replaced. */
export function redactUrl (url: string): string {
  let out = url
  const q = url.indexOf('?')
  if (q !== -1) {
    const parts = url.slice(q + 1).split('&')
    for (let i = 0; i < parts.length; i++) {
      const eq = parts[i].indexOf('=')
      const rawName = eq === -1 ? parts[i] : parts[i].slice(0, eq)
      if (SECRET_PARAMS.has(decodeName(rawName))) parts[i] = rawName + '=' + REDACTED
    }
    out = url.slice(0, q + 1) + parts.join('&')
  }
  if (out.includes('%')) out = out.split(URL_DELIMITERS).map(redactEncoded).join('')
  else if (out.includes(API_KEY_PREFIX)) out = out.replace(KEY_SHAPE, API_KEY_PREFIX + REDACTED)
  return out.length > MAX_LOGGED_URL ? out.slice(0, MAX_LOGGED_URL) + '…' : out
}

// Path segments and query names/values, each checked on its own; the delimiters are kept.
const URL_DELIMITERS = /([/?&=;#,])/

/**
 * A key can hide behind percent-escapes (`gw%5F…`, `%67%77_…`, even `gw%255F…` for a backend that
 * decodes twice): a piece whose decoded form holds a key shape is logged decoded and redacted;
 * any other piece is logged as sent.
 */
function redactEncoded (piece: string): string {
  const decoded = decodeEscapes(piece)
  if (!decoded.includes(API_KEY_PREFIX)) return piece
  const redacted = decoded.replace(KEY_SHAPE, API_KEY_PREFIX + REDACTED)
  return redacted === decoded ? piece : redacted
}

function decodeName (name: string): string {
  let n = name.replace(/\+/g, ' ')
  if (n.includes('%')) {
    try {
      n = decodeURIComponent(n)
    } catch {
      // A malformed escape is logged as sent (its value may still be secret: redact on raw name too).
    }
  }
  return n.trim().toLowerCase()
}
