// What a JWT consumer leaves in the logs (docs/jwt.md): the access line names the consumer
// `jwt:<iss>:<sub>`; no token, valid or not, appears in any line at any level.
import t from 'tap'
import { REDACT, buildApp } from '../../../src/app.js'
import { requestSerializer } from '../../../plugins/access-log.js'
import { routesFile, testConfig } from '../../support/app.js'
import { http } from '../../support/http.js'
import { forge } from '../../support/idp.js'
import { backend, bearer, idp, keysLoaded } from '../../support/jwt.js'

t.test('the access line names the JWT consumer; no token reaches a log line', async (t) => {
  const i = await idp(t, ['RS256'])
  const b = await backend(t)
  const raw: string[] = []
  const config = testConfig(t, {
    JWT_ISSUER: i.issuer,
    ROUTES_FILE: routesFile(t, [{ name: 'api', prefix: '/api', backends: [{ url: b.url }], scopes: ['x'] }]),
    RATE_LIMIT_BURST: '1000'
  })
  const app = await buildApp(config, { logger: { level: 'trace', redact: { paths: REDACT, censor: '[REDACTED]' }, serializers: { req: requestSerializer }, stream: { write: (line: string) => { raw.push(line) } } } })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const port = Number(new URL(url).port)
  await keysLoaded(app)

  const good = await i.sign({ claims: { sub: 'grace', scope: 'x' } })
  const tokens = [
    good,
    await i.sign({ claims: { sub: 'grace' } }), // no scope: 403
    await i.sign({ claims: { exp: 1 } }),
    await i.sign({ kid: 'unknown-kid' }),
    forge({ alg: 'none' }, { iss: i.issuer, sub: 'x' }),
    forge({ alg: 'RS256', kid: i.published[0] }, { iss: i.issuer, sub: 'x' }, 'c2lnbmF0dXJl')
  ]
  const statuses = []
  for (const token of tokens) statuses.push((await http(port, `/api/x?access_token=${token}`, { headers: bearer(token) })).status)
  t.same(statuses, [200, 403, 401, 401, 401, 401])
  i.setDown(true)
  await http(port, '/api/x', { headers: bearer(await i.sign({ kid: 'another-unknown' })) })
  await app.close()

  const lines = raw.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  const access = lines.filter((l) => l.msg === 'request completed' && l.route === '/api')
  t.equal(access[0]?.consumer, `jwt:${i.issuer}:grace`, 'the consumer of a valid token')
  t.equal(access[0]?.status, 200)
  t.ok(access.slice(1).every((l) => l.consumer === null), 'refused tokens are anonymous')
  const text = raw.join('')
  for (const token of tokens) {
    for (const part of token.split('.').filter((p) => p.length > 8)) t.notOk(text.includes(part), 'no part of a token in any log line')
  }
})
