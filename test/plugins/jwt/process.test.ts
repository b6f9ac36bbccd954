// JWT settings in a real gateway process (docs/jwt.md): it starts and serves with its IdP
// unreachable, logs why, and refuses a configuration that could only accept forgeable tokens.
import t from 'tap'
import { startGateway } from '../../support/gateway-process.js'
import { http } from '../../support/http.js'
import { backend, bearer, idp } from '../../support/jwt.js'
import { until } from '../../support/basics.js'

t.test('the process starts at once with its IdP down, answers 503, then serves once the IdP is up', async (t) => {
  const i = await idp(t, ['ES256'])
  i.setDown(true)
  const b = await backend(t)
  const gw = await startGateway(t, { env: { JWT_ISSUER: i.issuer, JWT_ALGORITHMS: 'ES256,HS256' }, services: [{ name: 'api', prefix: '/api', backends: [{ url: b.url }] }] })
  const token = await i.sign()
  t.equal((await http(gw.port, '/api/x', { headers: bearer(token) })).status, 503, 'healthy, and 503 for tokens of an issuer never reached')
  t.ok(await gw.waitForLog((l) => l.event === 'jwks_fetch_failed'), 'the failed fetch is logged')
  t.ok(gw.logs.some((l) => l.event === 'jwt_algorithms_refused'), 'HS256 is dropped with a warning')
  i.setDown(false)
  t.ok(await until(async () => (await http(gw.port, '/api/x', { headers: bearer(token) })).status === 200, 15_000, 200), 'served once the IdP answers')
  t.ok(await gw.waitForLog((l) => l.event === 'jwks_fetched'), 'the recovery is logged')
  await gw.stop()
  t.notOk(gw.output().includes(token.split('.')[2]), 'the token is in no output')
})

t.test('a configuration with only none/HS* algorithms exits 1 naming JWT_ALGORITHMS', async (t) => {
  const gw = await startGateway(t, { env: { JWT_ISSUER: 'https://idp.example', JWT_ALGORITHMS: 'HS256,none' }, waitHealthy: false })
  const { code } = await gw.exited
  t.equal(code, 1)
  t.match(gw.output(), /JWT_ALGORITHMS: none and HS\* algorithms are never accepted/)
})
