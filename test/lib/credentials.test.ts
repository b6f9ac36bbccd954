// One rule for gateway credentials (docs/admin-api.md#api-keys), through a listening gateway and a recording backend.
// The parser itself, in process: test/lib/credentials.unit.test.ts.
import t from 'tap'
import { listen, routesFile } from '../support/app.js'
import { http } from '../support/http.js'
import { rawRequest } from '../support/raw-client.js'
import { service } from '../support/suite.js'
import { echoUpstream, headerValues } from '../support/upstreams.js'

t.test('more than one different gateway credential is 401 and reaches no backend', async (t) => {
  const up = await echoUpstream(t)
  const { app, url } = await listen(t, { ROUTES_FILE: routesFile(t, [service('users', '/api/users', up.url)]), RATE_LIMIT_BURST: '1000' })
  const port = Number(new URL(url).port)
  const a = await app.apiKeys.create({ name: 'a' })
  const b = await app.apiKeys.create({ name: 'b' })
  const cases: Array<[string, string[]]> = [
    ['X-API-Key then Bearer', ['X-API-Key: ' + a.rawKey, 'Authorization: Bearer ' + b.rawKey]],
    ['Bearer then X-API-Key', ['Authorization: Bearer ' + b.rawKey, 'X-API-Key: ' + a.rawKey]],
    ['two X-API-Key lines', ['X-API-Key: ' + a.rawKey, 'X-API-Key: ' + b.rawKey]],
    ['two Authorization lines', ['Authorization: Bearer ' + a.rawKey, 'Authorization: Bearer ' + b.rawKey]]
  ]
  for (const [label, lines] of cases) {
    const res = await rawRequest(port, `GET /api/users/1 HTTP/1.1\r\nHost: g\r\n${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`)
    t.same(res.statuses, [401], label)
    t.match(res.raw, /"status":"error"/, `${label}: the envelope`)
  }
  t.equal(up.requests.length, 0, 'nothing reached the backend')
  const same = await rawRequest(port, `GET /api/users/1 HTTP/1.1\r\nHost: g\r\nX-API-Key: ${a.rawKey}\r\nAuthorization: Bearer ${a.rawKey}\r\nConnection: close\r\n\r\n`)
  t.same(same.statuses, [200], 'the same key twice is one credential')
  t.same(headerValues(up.requests[0].rawHeaders, 'x-consumer-name'), ['a'])
})

t.test('Authorization: Bearer<TAB>gw_… authenticates and is stripped, by the same rule', async (t) => {
  const up = await echoUpstream(t)
  const { app, url } = await listen(t, { ROUTES_FILE: routesFile(t, [service('users', '/api/users', up.url, { auth: 'required' })]), RATE_LIMIT_BURST: '1000' })
  const port = Number(new URL(url).port)
  const k = await app.apiKeys.create({ name: 'tabbed' })
  const res = await http(port, '/api/users/1', { headers: { authorization: `Bearer\t${k.rawKey}` } })
  t.equal(res.status, 200)
  const rec = up.requests.at(-1)
  t.same(headerValues(rec?.rawHeaders ?? [], 'authorization'), [], 'the gateway key did not reach the backend')
  t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-name'), ['tabbed'])
  const backendToken = await http(port, '/api/users/1', { headers: { authorization: `Bearer\t${k.rawKey}`, 'x-api-key': k.rawKey } })
  t.equal(backendToken.status, 200)
})
