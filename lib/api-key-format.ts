// The raw API key format (docs/admin-api.md#api-keys): `gw_` + 256 random bits in base64url (43 chars) + a 6-char
// checksum (CRC-32 of everything before it, base64url). The checksum lets the gateway reject typos
// and random junk without a store lookup; it is not a secret and adds no security by itself.
// Only SHA-256(raw key) is ever stored.
import { hash, randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

export const API_KEY_PREFIX = 'gw_'
const BODY_LENGTH = 43 // base64url of 32 bytes, unpadded
const CHECKSUM_LENGTH = 6 // base64url of 4 bytes, unpadded
export const API_KEY_LENGTH = API_KEY_PREFIX.length + BODY_LENGTH + CHECKSUM_LENGTH
const KEY_RE = /^gw_[A-Za-z0-9_-]{49}$/

export type ParsedApiKey = { ok: true, hash: string } | { ok: false }

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** base64url of the 4 big-endian bytes of CRC-32(head), unpadded: 6 chars (the last holds 2 bits). */
function checksum (head: string): string {
  const c = crc32(head)
  return B64URL[c >>> 26] + B64URL[(c >>> 20) & 63] + B64URL[(c >>> 14) & 63] +
    B64URL[(c >>> 8) & 63] + B64URL[(c >>> 2) & 63] + B64URL[(c & 3) << 4]
}

/** SHA-256 (hex) of the whole raw key: what the store keeps and looks up. */
export function hashKey (raw: string): string {
  return hash('sha256', raw, 'hex')
}

/** A new random key; `raw` is shown once to the creator, `hash` is stored. */
export function generateApiKey (): { raw: string, hash: string } {
  const head = API_KEY_PREFIX + randomBytes(32).toString('base64url')
  const raw = head + checksum(head)
  return { raw, hash: hashKey(raw) }
}

/** Format and checksum check; never touches the store. */
export function parseApiKey (raw: string): ParsedApiKey {
  if (raw.length !== API_KEY_LENGTH || !KEY_RE.test(raw)) return { ok: false }
  // The checksum is a function of the (attacker-supplied) head, not a secret: a plain compare is
  // fine. The secret itself is never compared here; the store looks its SHA-256 up.
  if (raw.slice(API_KEY_LENGTH - CHECKSUM_LENGTH) !== checksum(raw.slice(0, API_KEY_LENGTH - CHECKSUM_LENGTH))) return { ok: false }
  return { ok: true, hash: hashKey(raw) }
}

// A key anywhere in a longer text: the prefix and as many base64url characters as a key has.
const KEY_IN_TEXT = new RegExp(`${API_KEY_PREFIX}[A-Za-z0-9_-]{${BODY_LENGTH + CHECKSUM_LENGTH}}`)

/** Whether `text` holds something shaped like a raw key (checksum not checked: a typo is still secret). */
export function holdsApiKey (text: string): boolean {
  return text.length >= API_KEY_LENGTH && KEY_IN_TEXT.test(text)
}

/** A short, URL-safe, random record id (72 bits: collisions are not a practical concern). */
export function newKeyId (): string {
  return randomBytes(9).toString('base64url')
}
