// Looking for a gateway key behind percent-escapes (`gw%5F…`, `%67%77%5F…`, even `%2567…` for a
// backend that decodes twice): the proxy removes such query parts, the access log redacts them.

const ESCAPE = /%([0-9A-Fa-f]{2})/g

/**
 * A few rounds of percent-decoding, each decoding only well-formed escapes (so a malformed one
 * never throws), byte by byte: a key is ASCII, so no multi-byte character can hide one.
 */
export function decodeEscapes (text: string, rounds = 3): string {
  let decoded = text
  for (let round = 0; round < rounds && decoded.includes('%'); round++) {
    const next = decoded.replace(ESCAPE, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    if (next === decoded) break
    decoded = next
  }
  return decoded
}
