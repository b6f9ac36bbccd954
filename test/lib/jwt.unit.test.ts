// The pure JWT helpers (lib/jwt.ts): refused algorithms, the compact-JWS shape, scopes, freshness
// of a JWKS answer, header-safe claim values.
import t from 'tap'
import { headerSafe, isCompactJws, isRefusedAlgorithm, missingScope, partitionAlgorithms, refreshDelayMs, scopesOf } from '../../lib/jwt.js'

t.test('none and every HS* are refused, in any case', async (t) => {
  for (const alg of ['none', 'None', 'NONE', 'HS256', 'hs384', 'HS512']) t.ok(isRefusedAlgorithm(alg), alg)
  for (const alg of ['RS256', 'ES256', 'EdDSA', 'PS512', 'HSX']) t.notOk(isRefusedAlgorithm(alg), alg)
  t.same(partitionAlgorithms(['RS256', 'HS256', 'RS256', 'none', 'A128KW']), { allowed: ['RS256'], refused: ['HS256', 'none'], unknown: ['A128KW'] })
})

t.test('a compact JWS is three base64url segments with a header and a payload', async (t) => {
  for (const s of ['eyJh.eyJz.c2ln', 'a.b.', 'a-_.b_-.c']) t.ok(isCompactJws(s), s)
  for (const s of ['opaque', 'a.b', 'a.b.c.d', '.b.c', 'a..c', 'a.b.c=', 'a+b.c.d', 'a.b.c d', 'eyJ.x.y.z.w', '']) t.notOk(isCompactJws(s), JSON.stringify(s))
})

t.test('scopes come from a scope string and an scp array or string', async (t) => {
  t.same([...scopesOf({ scope: 'a b  c' })], ['a', 'b', 'c'])
  t.same([...scopesOf({ scp: ['x', 'y', 3] })], ['x', 'y'])
  t.same([...scopesOf({ scope: 'a', scp: 'b c' })], ['a', 'b', 'c'])
  t.same([...scopesOf({ scope: 7 })], [])
  t.equal(missingScope(['a', 'b'], new Set(['a'])), 'b')
  t.equal(missingScope(['a'], new Set(['a', 'b'])), null)
  t.equal(missingScope([], new Set()), null)
})

t.test('a JWKS answer is fresh for its max-age, within bounds; 300 s when it says nothing', async (t) => {
  const bounds = { defaultMs: 300_000, minMs: 10_000, maxMs: 86_400_000 }
  const at = (headers: Record<string, string>) => refreshDelayMs('https://idp.example/jwks', 200, headers, bounds)
  t.equal(at({ 'cache-control': 'public, max-age=600' }), 600_000)
  t.equal(at({ 'cache-control': 'max-age=600', age: '100' }), 500_000, 'Age counts')
  t.equal(at({}), 300_000, 'nothing: the default')
  t.equal(at({ 'cache-control': 'no-cache' }), 300_000, 'no-cache: the default, never a poll')
  t.equal(at({ 'cache-control': 'max-age=0' }), 300_000)
  t.equal(at({ 'cache-control': 'max-age=1' }), 10_000, 'the floor')
  t.equal(at({ 'cache-control': 'max-age=99999999' }), 86_400_000, 'the ceiling')
  t.equal(at({ 'cache-control': 'max-age=60, stale-if-error=86400' }), 60_000, 'stale-if-error does not delay the refresh')
  const expires = new Date(Date.now() + 3_600_000).toUTCString()
  t.ok(Math.abs(at({ expires, date: new Date().toUTCString() }) - 3_600_000) <= 2000, 'Expires')
})

t.test('claim values become header-safe', async (t) => {
  t.equal(headerSafe('user-1@example.com'), 'user-1@example.com')
  t.equal(headerSafe('a b'), 'a b')
  t.equal(headerSafe('é'), '%C3%A9')
  t.equal(headerSafe('x\r\ny: 1'), 'x%0D%0Ay%3A%201')
})
