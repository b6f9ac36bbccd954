// Key rotation and IdP outages (docs/jwt.md#keys-and-rotation), through a real gateway and a real
// local IdP: a rotated key works on its first request, random kids cost one fetch, an IdP down at
// start means 503 + Retry-After (never 401) until it is back, and one down later leaves the cached
// keys in use.
import t from 'tap'
import { until } from '../../support/basics.js'
import { http, metricValue, scrape } from '../../support/http.js'
import { api, backend, bearer, gateway, idp, keysLoaded } from '../../support/jwt.js'

t.test('after a rotation a token signed with the new key is accepted on its first request', async (t) => {
  const i = await idp(t, ['RS256'])
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl }, [api(b.url)])
  await keysLoaded(app)
  const old = i.keys.get(i.published[0])
  const before = await i.sign({ key: old, claims: { sub: 'before' } })
  t.equal((await http(port, '/api/x', { headers: bearer(before) })).status, 200, 'the old key works')
  const hits = i.jwksHits

  // The IdP rotates: it publishes a new key beside the old one and signs with the new one.
  const fresh = await i.addKey('ES256')
  const after = await i.sign({ key: fresh, claims: { sub: 'after' } })
  t.equal((await http(port, '/api/x', { headers: bearer(after) })).status, 200, 'the new key works on the first request')
  t.equal(i.jwksHits, hits + 1, 'by one refetch')
  t.equal((await http(port, '/api/x', { headers: bearer(before) })).status, 200, 'old and new both served: the old key still works')
  t.equal((await http(port, '/api/x', { headers: bearer(await i.sign({ key: old, claims: { sub: 'before-2' } })) })).status, 200)
})

t.test('1,000 tokens with random kids cost one JWKS fetch', async (t) => {
  const i = await idp(t, ['RS256'])
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl }, [api(b.url)])
  await keysLoaded(app)
  const hits = i.jwksHits
  const tokens = await Promise.all(Array.from({ length: 1000 }, (_, n) => i.sign({ kid: `random-${n}-${Math.random()}`, claims: { sub: `r${n}` } })))
  const statuses = new Map<number, number>()
  for (let n = 0; n < tokens.length; n += 50) {
    const batch = await Promise.all(tokens.slice(n, n + 50).map((tk) => http(port, '/api/x', { headers: bearer(tk) })))
    for (const r of batch) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
  }
  t.same([...statuses], [[401, 1000]], 'every one refused')
  t.equal(i.jwksHits - hits, 1, 'one JWKS fetch for all of them')
  const m = await scrape(port)
  t.equal(metricValue(m, 'gateway_jwt_verifications_total', { outcome: 'unknown_kid' }), 1000, 'counted as unknown_kid')
  t.equal((await http(port, '/api/x', { headers: bearer(await i.sign()) })).status, 200, 'a good token is still served')
})

t.test('IdP down at start: 503 with Retry-After (never 401) until it answers, then served', async (t) => {
  const i = await idp(t, ['RS256'])
  i.setDown(true)
  const b = await backend(t)
  // The gateway starts without waiting for its IdP.
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer }, [api(b.url)])
  const token = await i.sign()
  const res = await http(port, '/api/x', { headers: bearer(token) })
  t.equal(res.status, 503, '503 while no key set was ever fetched')
  t.match(res.headers['retry-after'], /^[1-5]$/, 'Retry-After: at most the 5 s backoff cap')
  t.match(res.json(), { status: 'error', error: 'Service Unavailable' })
  t.equal(res.headers['www-authenticate'], undefined, 'not an authentication failure')
  t.equal(b.hits, 0)
  t.equal((await http(port, '/api/x')).status, 200, 'anonymous requests are unaffected')
  const notYet = await http(port, '/ready')
  t.equal(notYet.status, 200, '/ready stays 200: an IdP outage does not take the gateway out')
  t.match(notYet.json().jwt, [{ issuer: i.issuer, keys: 'never_fetched', key_count: 0, last_fetch: null, failing: 'unreachable' }], 'and says why tokens get 503')

  i.setDown(false)
  const served = await until(async () => (await http(port, '/api/x', { headers: bearer(token) })).status === 200, 15_000, 200)
  t.ok(served, 'served once the IdP answers (backoff capped at 5 s)')
  t.ok(i.discoveryHits >= 1, 'discovery ran once the IdP was up')
  t.match((await http(port, '/ready')).json().jwt, [{ keys: 'loaded', key_count: 1, last_fetch: String, failing: null }])
  const m = await scrape(port)
  t.ok(metricValue(m, 'gateway_jwt_jwks_fetches_total', { outcome: 'unreachable' }) >= 1, 'failed fetches counted')
  t.ok(metricValue(m, 'gateway_jwt_verifications_total', { outcome: 'no_keys' }) >= 1, 'the 503s counted as no_keys')
  await keysLoaded(app)
})

t.test('IdP down later: cached keys keep working; an unknown kid is refused, not 503', async (t) => {
  const i = await idp(t, ['RS256'])
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl }, [api(b.url)])
  await keysLoaded(app)
  i.setDown(true)
  const unknown = await http(port, '/api/x', { headers: bearer(await i.sign({ kid: 'not-published' })) })
  t.equal(unknown.status, 401, 'unknown kid with the IdP down: 401 after the refetch failed')
  t.match(unknown.headers['www-authenticate'], /error="invalid_token"/)
  t.equal((await http(port, '/api/x', { headers: bearer(await i.sign({ claims: { sub: 'new-user' } })) })).status, 200, 'a new token with a cached key: served')
  const m = await scrape(port)
  t.ok(metricValue(m, 'gateway_jwt_jwks_fetches_total', { outcome: 'unreachable' }) >= 1, 'the failed refetch counted')
})
