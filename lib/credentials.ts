// Where a request carries a gateway credential (docs/admin-api.md#api-keys). One parser, used by the API-key hook to
// authenticate and by the proxy's header policy to strip: the two can never disagree on what a
// gateway key is.
import type { IncomingHttpHeaders } from 'node:http'
import { API_KEY_PREFIX } from './api-key-format.js'

export type Credential =
  | { kind: 'none' }
  | { kind: 'key', raw: string }
  /** More than one gateway credential, not all the same key: never authenticated as either. */
  | { kind: 'ambiguous' }

const NONE: Credential = Object.freeze({ kind: 'none' })
const AMBIGUOUS: Credential = Object.freeze({ kind: 'ambiguous' })

/**
 * The token of `Authorization: Bearer <token>` (RFC 9110 §11.4 and RFC 6750 §2.1: the scheme is
 * case-insensitive and followed by 1*SP; HTAB is accepted too, as RFC 9110's BWS allows), or null
 * for any other scheme.
 */
export function bearerToken (value: string | undefined): string | null {
  if (value === undefined || value.length < 8) return null
  const c = value.charCodeAt(6)
  if (c !== 0x20 && c !== 0x09) return null
  if (value.slice(0, 6).toLowerCase() !== 'bearer') return null
  const token = value.slice(7).trim()
  return token === '' ? null : token
}

/** Whether an Authorization value is a gateway key sent as a Bearer token (else it is the backend's). */
export function isGatewayBearer (value: string | undefined): boolean {
  const token = bearerToken(value)
  return token !== null && token.startsWith(API_KEY_PREFIX)
}

/**
 * The gateway credential of a request: `X-API-Key` or a gateway Bearer token. Node joins repeated
 * `X-API-Key` lines with ", " and keeps only the first `Authorization` line, so repeats are read
 * from the raw header list (only when one of the two names is present at all).
 */
export function findCredential (headers: IncomingHttpHeaders, rawHeaders: readonly string[]): Credential {
  const apiKey = headers['x-api-key']
  const authorization = headers.authorization
  if (apiKey === undefined && authorization === undefined) return NONE

  let found: string | null = null
  let ambiguous = false
  const add = (raw: string): void => {
    if (found === null) found = raw
    else if (found !== raw) ambiguous = true
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (name.length === 9 && name.toLowerCase() === 'x-api-key') {
      for (const part of rawHeaders[i + 1].split(',')) add(part.trim())
    } else if (name.length === 13 && name.toLowerCase() === 'authorization') {
      const token = bearerToken(rawHeaders[i + 1])
      if (token !== null && token.startsWith(API_KEY_PREFIX)) add(token)
    }
  }
  if (ambiguous) return AMBIGUOUS
  return found === null ? NONE : { kind: 'key', raw: found }
}
