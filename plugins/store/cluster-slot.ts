// Redis Cluster's key-to-slot mapping: CRC16 (XMODEM) of the key's hash tag (the part between
// the first `{` and the next `}`, when not empty) or of the whole key, modulo 16384, over the
// key's UTF-8 bytes. The store uses it to know which node serves a key (the bucket's failure
// domain for the rate limiter, the API keys' node for /ready) without asking the client.

const TABLE = new Uint16Array(256)
for (let i = 0; i < 256; i++) {
  let crc = i << 8
  for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  TABLE[i] = crc
}

function crc16 (bytes: Uint8Array, from: number, to: number): number {
  let crc = 0
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]) & 0xff]
  return crc
}

/** The Cluster slot (0–16383) of `key`. */
export function keySlot (key: string): number {
  const bytes = Buffer.from(key)
  let from = 0
  let to = bytes.length
  const open = bytes.indexOf(0x7b) // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1) // }
    if (close > open + 1) {
      from = open + 1
      to = close
    }
  }
  return crc16(bytes, from, to) & 0x3fff
}
