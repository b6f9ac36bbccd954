import t from 'tap'
import { createHash } from 'node:crypto'
import { API_KEY_LENGTH, generateApiKey, hashKey, newKeyId, parseApiKey } from '../../lib/api-key-format.js'

t.test('a generated key is gw_ + 43 base64url chars + a 6-char checksum', async (t) => {
  const { raw } = generateApiKey()
  t.equal(raw.length, API_KEY_LENGTH)
  t.equal(API_KEY_LENGTH, 52)
  t.match(raw, /^gw_[A-Za-z0-9_-]{49}$/)
})

t.test('the hash is the SHA-256 hex of the whole raw key', async (t) => {
  const { raw, hash } = generateApiKey()
  t.equal(hash, createHash('sha256').update(raw).digest('hex'))
  t.equal(hashKey(raw), hash)
  t.same(parseApiKey(raw), { ok: true, hash })
})

t.test('keys carry at least 256 random bits: 1,000 keys are all distinct', async (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 1000; i++) seen.add(generateApiKey().raw)
  t.equal(seen.size, 1000)
})

t.test('a key with any single character changed fails the checksum', async (t) => {
  const { raw } = generateApiKey()
  let accepted = 0
  for (let i = 3; i < raw.length; i++) {
    const c = raw[i] === 'A' ? 'B' : 'A'
    if (parseApiKey(raw.slice(0, i) + c + raw.slice(i + 1)).ok) accepted++
  }
  t.equal(accepted, 0)
})

t.test('malformed keys are rejected without hashing', async (t) => {
  const { raw, hash } = generateApiKey()
  for (const bad of ['', 'gw_', raw.slice(0, -1), raw + 'A', 'GW_' + raw.slice(3), 'gk_' + raw.slice(3),
    raw.slice(0, 10) + '+' + raw.slice(11), raw.slice(0, 10) + ' ' + raw.slice(11), hash, 'gw_' + hash,
    raw + '\n', '\u00e9'.repeat(52)]) {
    t.same(parseApiKey(bad), { ok: false }, JSON.stringify(bad))
  }
})

t.test('record ids are short, URL-safe and distinct', async (t) => {
  const ids = new Set<string>()
  for (let i = 0; i < 1000; i++) ids.add(newKeyId())
  t.equal(ids.size, 1000)
  t.same([...ids].filter((id) => !/^[A-Za-z0-9_-]{12}$/.test(id)), [])
})
