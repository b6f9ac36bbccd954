// The JWT settings (docs/jwt.md): defaults, issuers from the environment and the routes file,
// algorithms that are never accepted, and the service fields authMethods and scopes.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../lib/config.js'
import { tempDir, type Teardownable } from '../support/basics.js'
import { configProblems } from '../support/app.js'

const load = (env: Record<string, string>) => loadConfig({ ADMIN_PASSWORD: 'pw', ...env }, { dotenv: false })

function withFile (t: Teardownable, content: unknown, env: Record<string, string> = {}) {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'routes.json'), JSON.stringify(content))
  return () => load({ ROUTES_FILE: join(dir, 'routes.json'), ...env })
}

const svc = (extra: Record<string, unknown> = {}) => ({ name: 'api', prefix: '/api', backends: [{ url: 'http://127.0.0.1:9000' }], ...extra })

t.test('JWT consumers are off by default; services accept both methods and require no scope', async (t) => {
  const c = load({})
  t.same(c.jwt, { issuers: [], clockToleranceSeconds: 30, consumerClaim: 'sub', forwardToken: true, refusedAlgorithms: [] })
  t.ok(c.services.every((s) => s.authMethods.join() === 'apikey,jwt' && s.scopes.length === 0))
})

t.test('JWT_* variables shape one issuer', async (t) => {
  const c = load({
    JWT_ISSUER: 'https://idp.example/realms/main',
    JWT_AUDIENCE: 'orders, billing',
    JWT_ALGORITHMS: 'RS256,ES256',
    JWT_CLOCK_TOLERANCE_SECONDS: '5',
    JWT_CONSUMER_CLAIM: 'client_id',
    JWT_FORWARD_TOKEN: 'false'
  })
  t.same(c.jwt.issuers, [{ issuer: 'https://idp.example/realms/main', jwksUrl: null, audiences: ['orders', 'billing'], algorithms: ['RS256', 'ES256'] }])
  t.same([c.jwt.clockToleranceSeconds, c.jwt.consumerClaim, c.jwt.forwardToken], [5, 'client_id', false])
  t.same(load({ JWT_ISSUER: 'my-issuer', JWT_JWKS_URL: 'https://keys.example/jwks' }).jwt.issuers[0].algorithms, ['RS256', 'PS256', 'ES256', 'EdDSA'], 'the default algorithms')
})

t.test('none and HS* are filtered out, and a list of only those is refused', async (t) => {
  const c = load({ JWT_ISSUER: 'https://idp.example', JWT_ALGORITHMS: 'RS256,HS256,none,hs512' })
  t.same(c.jwt.issuers[0].algorithms, ['RS256'])
  t.same([...c.jwt.refusedAlgorithms].sort(), ['HS256', 'hs512', 'none'])
  t.match(configProblems(() => load({ JWT_ISSUER: 'https://idp.example', JWT_ALGORITHMS: 'HS256,none' })), [/^JWT_ALGORITHMS: none and HS\* algorithms are never accepted/])
  t.match(configProblems(() => load({ JWT_ISSUER: 'https://idp.example', JWT_ALGORITHMS: 'RS256,RSA-OAEP' })), [/^JWT_ALGORITHMS: unknown algorithm RSA-OAEP/])
})

t.test('settings that cannot work are start-up errors naming the variable', async (t) => {
  t.match(configProblems(() => load({ JWT_JWKS_URL: 'https://keys.example/jwks' })), [/^JWT_JWKS_URL: needs JWT_ISSUER/])
  t.match(configProblems(() => load({ JWT_AUDIENCE: 'x' })), [/^JWT_AUDIENCE: needs JWT_ISSUER/])
  t.match(configProblems(() => load({ JWT_ISSUER: 'not-a-url' })), [/^JWT_ISSUER: must be an http\(s\) URL for OpenID Connect discovery, or give its JWKS URL \(JWT_JWKS_URL\)/])
  t.match(configProblems(() => load({ JWT_ISSUER: 'https://idp.example', JWT_JWKS_URL: 'ftp://x' })), [/^JWT_JWKS_URL: must be an http/])
  t.match(configProblems(() => load({ JWT_CLOCK_TOLERANCE_SECONDS: '601' })), [/^JWT_CLOCK_TOLERANCE_SECONDS/])
  t.match(configProblems(() => load({ JWT_FORWARD_TOKEN: 'maybe' })), [/^JWT_FORWARD_TOKEN/])
  t.match(configProblems(() => load({ JWT_CONSUMER_CLAIM: 'a b' })), [/^JWT_CONSUMER_CLAIM/])
})

t.test('issuers in the routes file join JWT_ISSUER, with their own audiences and algorithms', async (t) => {
  const c = withFile(t, {
    services: [svc({ authMethods: ['jwt'], scopes: ['orders:read'] })],
    issuers: [{ issuer: 'https://b.example', audiences: ['gw'], algorithms: ['EdDSA', 'HS256'] }, { issuer: 'c', jwksUrl: 'http://keys.internal/jwks' }]
  }, { JWT_ISSUER: 'https://a.example' })()
  t.same(c.jwt.issuers.map((i) => [i.issuer, i.jwksUrl, i.audiences, i.algorithms]), [
    ['https://a.example', null, null, ['RS256', 'PS256', 'ES256', 'EdDSA']],
    ['https://b.example', null, ['gw'], ['EdDSA']],
    ['c', 'http://keys.internal/jwks', null, ['RS256', 'PS256', 'ES256', 'EdDSA']]
  ])
  t.same(c.jwt.refusedAlgorithms, ['HS256'])
  t.same([c.services[0].authMethods, c.services[0].scopes], [['jwt'], ['orders:read']])
  t.match(configProblems(withFile(t, { services: [svc()], issuers: [{ issuer: 'https://a.example' }] }, { JWT_ISSUER: 'https://a.example' })),
    [/^ROUTES_FILE: issuers\.0\.issuer: "https:\/\/a\.example" is configured twice/])
  t.match(configProblems(withFile(t, { services: [svc()], issuers: [{ issuer: 'x', extra: 1 }] })), [/^ROUTES_FILE: issuers\.0/])
})

t.test('a service accepting only JWTs needs an issuer; bad authMethods and scopes name the field', async (t) => {
  t.match(configProblems(withFile(t, { services: [svc({ authMethods: ['jwt'] })] })), [/^ROUTES_FILE: 0\.authMethods: service accepts only "jwt" but no issuer/])
  t.same(configProblems(withFile(t, { services: [svc({ authMethods: ['apikey'] })] })), [])
  t.match(configProblems(withFile(t, { services: [svc({ authMethods: [] })] })), [/^ROUTES_FILE: services\.0\.authMethods/])
  t.match(configProblems(withFile(t, { services: [svc({ authMethods: ['jwt', 'jwt'] })] }, { JWT_ISSUER: 'https://a.example' })), [/^ROUTES_FILE: services\.0\.authMethods: must not repeat/])
  t.match(configProblems(withFile(t, { services: [svc({ authMethods: ['basic'] })] })), [/^ROUTES_FILE: services\.0\.authMethods/])
  t.match(configProblems(withFile(t, { services: [svc({ scopes: ['has space'] })] })), [/^ROUTES_FILE: services\.0\.scopes\.0: must be a scope token/])
})
