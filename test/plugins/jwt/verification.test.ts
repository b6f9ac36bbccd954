// JWT consumers (docs/jwt.md) over real sockets: a gateway in front of a real backend, a real
// local IdP serving discovery and a JWKS, tokens signed with node:crypto keys.
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { SignJWT } from 'jose'
import { http, metricValue, scrape } from '../../support/http.js'
import { forge } from '../../support/idp.js'
import { api, backend, bearer, gateway, idp, keysLoaded } from '../../support/jwt.js'

const now = () => Math.floor(Date.now() / 1000)

t.test('RS256, ES256 and EdDSA tokens are accepted; the backend sees the subject, never a forged identity', async (t) => {
  const i = await idp(t, ['RS256', 'ES256', 'EdDSA'])
  const b = await backend(t)
  // No JWT_JWKS_URL: the keys come from OpenID Connect discovery.
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer }, [api(b.url)])
  for (const kid of i.published) {
    const key = i.keys.get(kid)
    const token = await i.sign({ key, claims: { sub: `user-${key?.alg}` } })
    const res = await http(port, '/api/me', { headers: { ...bearer(token), 'x-consumer-id': 'admin', 'x-consumer-issuer': 'evil' } })
    t.equal(res.status, 200, `${key?.alg}: accepted`)
    const seen = b.requests.at(-1)?.headers
    t.equal(seen?.['x-consumer-id'], `user-${key?.alg}`, `${key?.alg}: X-Consumer-Id is the token's sub`)
    t.equal(seen?.['x-consumer-issuer'], i.issuer, 'X-Consumer-Issuer is the token\'s iss')
    t.equal(seen?.authorization, `Bearer ${token}`, 'JWT_FORWARD_TOKEN defaults to true: the backend gets the token')
  }
  t.ok(i.discoveryHits >= 1, 'the discovery document was read')
  await keysLoaded(app)
})

t.test('a repeated token is verified once; its consumer has its own rate-limit bucket', async (t) => {
  const i = await idp(t)
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl, RATE_LIMIT_BURST: '3', RATE_LIMIT_RPM: '1' }, [api(b.url)])
  await keysLoaded(app)
  const alice = await i.sign({ claims: { sub: 'alice' } })
  const statuses: number[] = []
  for (let n = 0; n < 5; n++) statuses.push((await http(port, '/api/x', { headers: bearer(alice) })).status)
  t.same(statuses, [200, 200, 200, 429, 429], 'alice has a bucket of 3')
  const bob = await i.sign({ claims: { sub: 'bob' } })
  t.equal((await http(port, '/api/x', { headers: bearer(bob) })).status, 200, 'bob has his own bucket, though from the same address')
  const m = await scrape(port)
  t.equal(metricValue(m, 'gateway_jwt_verifications_total', { outcome: 'valid' }), 2, 'two tokens, two signature checks: repeats came from the cache')
})

t.test('every kind of bad token is 401 invalid_token in the JSON envelope, never echoing the token', async (t) => {
  const i = await idp(t, ['RS256', 'ES256'], { audience: 'orders' })
  const b = await backend(t)
  const { app, port } = await gateway(t, {
    JWT_ISSUER: i.issuer,
    JWT_JWKS_URL: i.jwksUrl,
    JWT_AUDIENCE: 'orders,billing',
    JWT_ALGORITHMS: 'RS256,HS256,none',
    JWT_CLOCK_TOLERANCE_SECONDS: '30'
  }, [api(b.url)])
  await keysLoaded(app)
  const rsa = i.keys.get(i.published[0])
  const ec = i.keys.get(i.published[1])
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  const publicPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' })
  const cases: Array<[string, string, string]> = [
    ['expired beyond the tolerance', await i.sign({ claims: { exp: now() - 60 } }), 'expired'],
    ['nbf beyond the tolerance', await i.sign({ claims: { nbf: now() + 120 } }), 'not_yet_valid'],
    ['signed by another key under a known kid', await new SignJWT({ iss: i.issuer, sub: 'x', aud: 'orders', exp: now() + 60 })
      .setProtectedHeader({ alg: 'RS256', kid: rsa?.kid }).sign(stranger), 'bad_signature'],
    ['an unknown issuer', await i.sign({ claims: { iss: 'https://evil.example' } }), 'wrong_issuer'],
    ['another audience', await i.sign({ claims: { aud: 'admin' } }), 'wrong_audience'],
    ['no audience', await i.sign({ claims: { aud: undefined } }), 'wrong_audience'],
    ['an algorithm not configured (ES256)', await i.sign({ key: ec }), 'bad_algorithm'],
    ['HS256, configured but always refused', await new SignJWT({ iss: i.issuer, sub: 'x', aud: 'orders' })
      .setProtectedHeader({ alg: 'HS256', kid: rsa?.kid }).sign(Buffer.from(publicPem)), 'bad_algorithm'],
    ['alg none', forge({ alg: 'none' }, { iss: i.issuer, sub: 'x', aud: 'orders' }), 'bad_algorithm'],
    ['a header that is not JSON', `${Buffer.from('{"alg":').toString('base64url')}.eyJzdWIiOiJ4In0.c2ln`, 'malformed'],
    ['no sub', await i.sign({ claims: { sub: undefined } }), 'malformed']
  ]
  for (const [what, token, outcome] of cases) {
    const res = await http(port, '/api/x', { headers: bearer(token) })
    t.equal(res.status, 401, `${what}: 401`)
    t.match(res.headers['www-authenticate'], /^Bearer realm="gateway", error="invalid_token", error_description="[^"]+"$/, `${what}: RFC 6750 challenge`)
    t.same(Object.keys(res.json()).sort(), ['error', 'message', 'status'], `${what}: the envelope`)
    t.equal(res.json().status, 'error')
    t.notOk(res.body.includes(token.split('.')[1]), `${what}: the token is not in the body`)
    const m = await scrape(port)
    t.ok(metricValue(m, 'gateway_jwt_verifications_total', { outcome }) >= 1, `${what}: counted as ${outcome}`)
  }
  t.equal(b.hits, 0, 'no bad token reached the backend')

  const within = [
    ['expired within the tolerance', await i.sign({ claims: { exp: now() - 10 } })],
    ['nbf within the tolerance', await i.sign({ claims: { nbf: now() + 10 } })],
    ['an audience among several', await i.sign({ claims: { aud: ['other', 'billing'] } })]
  ]
  for (const [what, token] of within) t.equal((await http(port, '/api/x', { headers: bearer(token) })).status, 200, `${what}: accepted`)
})

t.test('other Bearer values pass through as before; a JWT with a key is ambiguous', async (t) => {
  const i = await idp(t)
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl }, [api(b.url)])
  await keysLoaded(app)
  const opaque = await http(port, '/api/x', { headers: { authorization: 'Bearer opaque-backend-token' } })
  t.equal(opaque.status, 200, 'an opaque Bearer is the backend\'s')
  t.equal(b.requests.at(-1)?.headers.authorization, 'Bearer opaque-backend-token', 'passed untouched')
  t.equal(b.requests.at(-1)?.headers['x-consumer-id'], undefined, 'and anonymous')

  const key = (await app.inject({ method: 'POST', url: '/admin/apikeys', headers: { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }, payload: { name: 'k' } })).json().data
  t.equal((await http(port, '/api/x', { headers: { 'x-api-key': key.raw_key } })).status, 200, 'an API key still works')
  t.equal(b.requests.at(-1)?.headers['x-consumer-id'], key.api_key.id)
  t.equal((await http(port, '/api/x', { headers: bearer(key.raw_key) })).status, 200, 'so does a gateway Bearer key')

  const token = await i.sign()
  const both = await http(port, '/api/x', { headers: { ...bearer(token), 'x-api-key': key.raw_key } })
  t.equal(both.status, 401, 'a JWT and a key together: 401')
  t.match(both.headers['www-authenticate'], /error="invalid_request"/)
  const twice = await http(port, '/api/x', { headers: { authorization: [`Bearer ${token}`, `Bearer ${token}`] } })
  t.equal(twice.status, 401, 'two Authorization lines: 401')
})

t.test('JWT_FORWARD_TOKEN=false strips the token toward the backend', async (t) => {
  const i = await idp(t)
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl, JWT_FORWARD_TOKEN: 'false', JWT_CONSUMER_CLAIM: 'client_id' }, [api(b.url)])
  await keysLoaded(app)
  const res = await http(port, '/api/x', { headers: bearer(await i.sign({ claims: { client_id: 'svc-7' } })) })
  t.equal(res.status, 200)
  t.equal(b.requests.at(-1)?.headers.authorization, undefined, 'no Authorization upstream')
  t.equal(b.requests.at(-1)?.headers['x-consumer-id'], 'svc-7', 'JWT_CONSUMER_CLAIM names the consumer')
  const odd = await http(port, '/api/x', { headers: bearer(await i.sign({ claims: { client_id: 'é\r\nx-evil: 1' } })) })
  t.equal(odd.status, 200, 'a claim that is not a header value is still a consumer')
  t.equal(b.requests.at(-1)?.headers['x-consumer-id'], encodeURIComponent('é\r\nx-evil: 1'), 'sent percent-encoded')
  t.equal(b.requests.at(-1)?.headers['x-evil'], undefined, 'no header injected')
})

t.test('scopes and authMethods per service', async (t) => {
  const i = await idp(t)
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl }, [
    { name: 'orders', prefix: '/orders', backends: [{ url: b.url }], scopes: ['orders:read', 'orders:list'] },
    { name: 'jwt-only', prefix: '/jwt', backends: [{ url: b.url }], authMethods: ['jwt'], auth: 'required' },
    { name: 'keys-only', prefix: '/keys', backends: [{ url: b.url }], authMethods: ['apikey'] },
    { name: 'either', prefix: '/either', backends: [{ url: b.url }], auth: 'required' }
  ])
  await keysLoaded(app)
  const none = await http(port, '/orders/1', { headers: bearer(await i.sign({ claims: { scope: 'orders:read' } })) })
  t.equal(none.status, 403, 'a missing scope: 403')
  t.equal(none.headers['www-authenticate'], 'Bearer realm="gateway", error="insufficient_scope", scope="orders:read orders:list"')
  t.match(none.json(), { status: 'error', error: 'Forbidden' })
  t.equal((await http(port, '/orders/1', { headers: bearer(await i.sign({ claims: { scope: 'a orders:list orders:read' } })) })).status, 200, 'scope string')
  t.equal((await http(port, '/orders/1', { headers: bearer(await i.sign({ claims: { scp: ['orders:list', 'orders:read'] } })) })).status, 200, 'scp array')

  const key = (await app.inject({ method: 'POST', url: '/admin/apikeys', headers: { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }, payload: { name: 'k' } })).json().data.raw_key
  const token = await i.sign()
  t.equal((await http(port, '/jwt/x', { headers: bearer(token) })).status, 200, 'jwt-only takes a JWT')
  const keyed = await http(port, '/jwt/x', { headers: { 'x-api-key': key } })
  t.equal(keyed.status, 401, 'jwt-only refuses a key')
  t.equal(keyed.headers['www-authenticate'], 'Bearer realm="gateway"')
  const missing = await http(port, '/jwt/x')
  t.equal(missing.status, 401, 'jwt-only + required: 401 without a token')
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="gateway"')

  const passed = await http(port, '/keys/x', { headers: bearer(token) })
  t.equal(passed.status, 200, 'keys-only: a JWT is the backend\'s, untouched')
  t.equal(b.requests.at(-1)?.headers['x-consumer-id'], undefined, 'and anonymous')
  t.equal((await http(port, '/keys/x', { headers: bearer(forge({ alg: 'none' }, { sub: 'x' })) })).status, 200, 'not even looked at')

  const neither = await http(port, '/either/x')
  t.equal(neither.status, 401, 'required: 401 without a credential')
  t.equal(neither.headers['www-authenticate'], 'Key realm="gateway", Bearer realm="gateway"', 'both challenges')
  t.equal((await http(port, '/either/x', { headers: bearer(token) })).status, 200, 'a JWT satisfies auth: required')
  t.equal((await http(port, '/either/x', { headers: { 'x-api-key': key } })).status, 200, 'so does a key')
})

t.test('several issuers from the routes file, each with its own audience', async (t) => {
  const a = await idp(t, ['ES256'])
  const c = await idp(t, ['EdDSA'])
  const b = await backend(t)
  const { app, port } = await gateway(t, { JWT_ISSUER: a.issuer }, [api(b.url)], [
    { issuer: c.issuer, jwksUrl: c.jwksUrl, audiences: ['gw'], algorithms: ['EdDSA'] }
  ])
  await keysLoaded(app)
  t.equal((await http(port, '/api/x', { headers: bearer(await a.sign({ claims: { sub: 'from-a' } })) })).status, 200, 'issuer a (discovery)')
  t.equal(b.requests.at(-1)?.headers['x-consumer-issuer'], a.issuer)
  t.equal((await http(port, '/api/x', { headers: bearer(await c.sign({ claims: { sub: 'from-c', aud: 'gw' } })) })).status, 200, 'issuer c')
  t.equal(b.requests.at(-1)?.headers['x-consumer-issuer'], c.issuer)
  t.equal((await http(port, '/api/x', { headers: bearer(await c.sign({ claims: { sub: 'from-c' } })) })).status, 401, 'issuer c without its audience')
  // A token claiming issuer a but signed by c's key: a's keys do not have that kid.
  t.equal((await http(port, '/api/x', { headers: bearer(await c.sign({ claims: { iss: a.issuer, aud: 'gw' } })) })).status, 401, 'one issuer\'s key never verifies another\'s tokens')
})
