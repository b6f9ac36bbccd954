// Per-service header transforms over real sockets (docs/policies.md#header-transforms):
// `requestHeaders` change what the backend receives, `responseHeaders` what the client receives,
// names in any case; the gateway's own fields can be neither set nor removed (a start-up error and
// a 400 from the admin API, naming the header).
import t, { type Test } from 'tap'
import { configProblems, listen, routesFile, testConfig } from '../../support/app.js'
import { echo, startBackend } from '../../support/backends.js'
import { http } from '../../support/http.js'

async function gateway (t: Test, policy: Record<string, unknown>) {
  const backend = await startBackend((req, res, body, n) => {
    res.setHeader('server', 'backend/1.0')
    res.setHeader('x-powered-by', 'php')
    res.setHeader('x-backend-keep', 'yes')
    res.setHeader('cache-control', 'public, max-age=60')
    res.setHeader('x-ratelimit-limit', '999')
    echo(req, res, body, n)
  })
  t.teardown(() => backend.close())
  const file = routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: backend.url }], ...policy }])
  const { app, url } = await listen(t, { ROUTES_FILE: file })
  return { app, backend, port: Number(new URL(url).port) }
}

t.test('requestHeaders set and remove fields on the way to the backend', async (t) => {
  const { backend, port } = await gateway(t, {
    requestHeaders: { set: { 'X-Tenant': 'acme', 'User-Agent': 'gateway-rewritten' }, remove: ['Cookie', 'x-debug'] }
  })
  const res = await http(port, '/svc/a', {
    headers: { cookie: 'session=1', 'x-debug': 'on', 'x-tenant': 'forged', 'user-agent': 'curl/8', 'x-other': 'kept' }
  })
  t.equal(res.status, 200)
  const seen = backend.requests[0].headers
  t.equal(seen['x-tenant'], 'acme', 'set replaces what the client sent')
  t.equal(seen['user-agent'], 'gateway-rewritten')
  t.equal(seen.cookie, undefined, 'removed')
  t.equal(seen['x-debug'], undefined, 'removed')
  t.equal(seen['x-other'], 'kept', 'untouched fields pass')
  t.equal(seen['x-request-id'], res.headers['x-request-id'], 'the gateway still writes its own fields')
  t.equal(seen['x-forwarded-for'], '127.0.0.1')
})

t.test('a set field reaches the backend even when the client sends none', async (t) => {
  const { backend, port } = await gateway(t, { requestHeaders: { set: { 'x-tenant': 'acme' } } })
  await http(port, '/svc/a')
  t.equal(backend.requests[0].headers['x-tenant'], 'acme')
})

t.test('responseHeaders set and remove fields on the way to the client; the gateway keeps its own', async (t) => {
  const { port } = await gateway(t, {
    responseHeaders: { set: { 'Strict-Transport-Security': 'max-age=63072000', 'cache-control': 'no-store' }, remove: ['Server', 'X-Powered-By'] }
  })
  const res = await http(port, '/svc/a')
  t.equal(res.status, 200)
  t.equal(res.headers['strict-transport-security'], 'max-age=63072000')
  t.equal(res.headers['cache-control'], 'no-store', 'set replaces the backend\'s value')
  t.equal(res.headers.server, undefined)
  t.equal(res.headers['x-powered-by'], undefined)
  t.equal(res.headers['x-backend-keep'], 'yes')
  t.ok(res.headers['x-request-id'], 'request id still set')
  t.not(res.headers['x-ratelimit-limit'], '999', 'the rate-limit fields are still the gateway\'s')
  t.equal(res.json().method, 'GET', 'the body is untouched')
})

t.test('without transforms the backend and the client see what they did before', async (t) => {
  const { backend, port } = await gateway(t, {})
  const res = await http(port, '/svc/a', { headers: { cookie: 'a=1' } })
  t.equal(backend.requests[0].headers.cookie, 'a=1')
  t.equal(res.headers.server, 'backend/1.0')
})

const PROTECTED = [
  ['requestHeaders', 'set', 'Host'],
  ['requestHeaders', 'remove', 'X-Forwarded-For'],
  ['requestHeaders', 'set', 'X-Consumer-Id'],
  ['requestHeaders', 'remove', 'x-request-id'],
  ['requestHeaders', 'set', 'traceparent'],
  ['requestHeaders', 'remove', 'Connection'],
  ['requestHeaders', 'set', 'Transfer-Encoding'],
  ['responseHeaders', 'set', 'X-RateLimit-Remaining'],
  ['responseHeaders', 'remove', 'Retry-After'],
  ['responseHeaders', 'remove', 'Keep-Alive'],
  ['responseHeaders', 'set', 'RateLimit-Policy'],
  ['responseHeaders', 'set', 'X-Quota-Remaining']
] as const

const ruleFor = (where: string, how: string, name: string) =>
  ({ [where]: how === 'set' ? { set: { [name]: 'x' } } : { remove: [name] } })

t.test('every protected name in the routes file is a start-up error naming the header', async (t) => {
  for (const [where, how, name] of PROTECTED) {
    const problems = configProblems(() => testConfig(t, {
      ROUTES_FILE: routesFile(t, [{ name: 'svc', prefix: '/svc', backends: [{ url: 'http://127.0.0.1:9' }], ...ruleFor(where, how, name) }])
    }))
    t.equal(problems.length, 1, `${where}.${how} ${name}: ${problems.join(' | ')}`)
    t.match(problems[0], `ROUTES_FILE: services.0.${where}.${how}.`)
    t.match(problems[0], `header "${name}" cannot be set or removed`)
  }
})

t.test('bad names and values are start-up errors too', async (t) => {
  const problems = configProblems(() => testConfig(t, {
    ROUTES_FILE: routesFile(t, [{
      name: 'svc',
      prefix: '/svc',
      backends: [{ url: 'http://127.0.0.1:9' }],
      requestHeaders: { set: { 'bad name': 'x', 'x-split': 'a\r\nx-injected: 1', 'X-Dup': '1', 'x-dup': '2' }, remove: ['x-ok', 'bad:name'] }
    }])
  }))
  t.equal(problems.length, 4, problems.join('\n'))
  t.match(problems.join('\n'), /header name "bad name" is not a valid HTTP token/)
  t.match(problems.join('\n'), /value of header "x-split" may hold only visible ASCII/)
  t.match(problems.join('\n'), /header "x-dup" is already named \(as "X-Dup"\)/)
  t.match(problems.join('\n'), /header name "bad:name" is not a valid HTTP token/)
})

t.test('the admin API answers 400 naming the header, and shows accepted transforms', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const { app, url } = await listen(t)
  const port = Number(new URL(url).port)
  const auth = { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') }
  const put = (extra: Record<string, unknown>) => app.inject({
    method: 'PUT', url: '/admin/services/svc', headers: auth, payload: { prefix: '/svc', backends: [{ url: backend.url }], ...extra }
  })
  for (const [where, how, name] of PROTECTED) {
    const res = await put(ruleFor(where, how, name))
    t.equal(res.statusCode, 400, `${where}.${how} ${name}`)
    t.match(res.json().message, `header "${name}" cannot be set or removed`)
  }
  const patch = await app.inject({
    method: 'PATCH', url: '/admin/services/user-service', headers: auth, payload: { responseHeaders: { remove: ['X-Forwarded-Host'] } }
  })
  t.equal(patch.statusCode, 400, 'a merge patch is checked by the same rules')
  t.equal((await put({ requestHeaders: { set: { 'x-tenant': 'acme' } }, responseHeaders: { remove: ['server'] } })).statusCode, 201)
  const listed = (await app.inject({ url: '/admin/services', headers: auth })).json().data.find((s: { name: string }) => s.name === 'svc')
  t.same(listed.requestHeaders, { set: { 'x-tenant': 'acme' } })
  t.same(listed.responseHeaders, { remove: ['server'] })
  await http(port, '/svc/a')
  t.equal(backend.requests[0].headers['x-tenant'], 'acme', 'applied at once')
  const merged = await app.inject({
    method: 'PATCH', url: '/admin/services/svc', headers: auth, payload: { requestHeaders: { set: { 'x-region': 'eu' } } }
  })
  t.equal(merged.statusCode, 200, merged.body)
  t.same(merged.json().data.service.requestHeaders, { set: { 'x-tenant': 'acme', 'x-region': 'eu' } }, 'a merge patch adds to set')
  await http(port, '/svc/a')
  t.match(backend.requests[1].headers, { 'x-tenant': 'acme', 'x-region': 'eu' })
  const dropped = await app.inject({ method: 'PATCH', url: '/admin/services/svc', headers: auth, payload: { requestHeaders: null } })
  t.equal(dropped.statusCode, 200)
  t.equal(dropped.json().data.service.requestHeaders, undefined, 'null removes the transform')
})
