// The proxy core's fixes, each over real sockets: an in-process gateway listening on a port, real
// backends, node:http clients. Every test here failed on the @fastify/http-proxy core.
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import t from 'tap'
import { listen, routesFile } from '../../support/app.js'
import { http, parseMetrics, metricValue } from '../../support/http.js'
import { service } from '../../support/suite.js'
import { echoUpstream, flakyUpstream, headerValues, recordingUpstream, slowUpstream } from '../../support/upstreams.js'
import { sleep, type Teardownable, until } from '../../support/basics.js'

const portOf = (url: string) => Number(new URL(url).port)

async function gateway (t: Teardownable, services: unknown[], env: Record<string, string> = {}) {
  const { app, url } = await listen(t, { ROUTES_FILE: routesFile(t, services), RATE_LIMIT_BURST: '10000', RATE_LIMIT_RPM: '100000', ...env })
  return { app, port: portOf(url) }
}

async function metrics (app: { inject: (o: { url: string }) => Promise<{ body: string }> }) {
  return parseMetrics((await app.inject({ url: '/metrics' })).body)
}

t.test('a half-open breaker gets every trial slot back from requests that never reached a backend', async (t) => {
  const up = await flakyUpstream(t, [503])
  // The reset timeout is long enough that the breaker is surely still open for the second request
  // on a busy machine; half-open is then awaited, not assumed after a sleep.
  const { app, port } = await gateway(t, [service('users', '/api/users', up.url)], {
    CB_MAX_FAILURES: '1',
    CB_RESET_TIMEOUT_SECONDS: '2',
    CB_HALF_OPEN_MAX_REQUESTS: '3',
    CB_SUCCESS_THRESHOLD: '5',
    RETRY_MAX_RETRIES: '0',
    BODY_LIMIT_BYTES: '1024'
  })
  t.equal((await http(port, '/api/users/1')).status, 503, 'the failure opens the breaker')
  t.equal((await http(port, '/api/users/1')).status, 503, 'open: answered by the gateway')
  t.equal(up.requests.length, 1, 'open: the backend saw only the first request')
  t.ok(await until(() => app.breakers.get('users')?.state === 'half-open', 10000), 'half-open after the reset timeout')
  // Half-open with 3 trial slots: requests that end before a backend answers, three of each kind.
  for (let i = 0; i < 3; i++) {
    t.equal((await http(port, '/api/users/%2e%2e/x')).status, 400, 'a dot segment')
    t.equal((await http(port, '/api/users/1', { method: 'PUT', body: 'x'.repeat(2048), headers: { 'content-type': 'text/plain' } })).status, 413, 'a body over the limit')
  }
  // A client that leaves while its trial request is on the wire.
  const slowPath = '/api/users/slow'
  await new Promise<void>((resolve) => {
    const req = httpRequest({ port, path: slowPath, agent: false })
    req.on('error', () => resolve())
    setTimeout(() => { req.destroy(); resolve() }, 50)
    req.end()
  })
  await sleep(50)
  const after = await http(port, '/api/users/1')
  t.equal(after.status, 200, 'a trial slot is still free: the request reaches the backend')
})

t.test('GET /api/users/..x is a name, not a traversal, and completes a half-open trial', async (t) => {
  const up = await flakyUpstream(t, [503])
  const { port } = await gateway(t, [service('users', '/api/users', up.url)], {
    CB_MAX_FAILURES: '1', CB_RESET_TIMEOUT_SECONDS: '0.2', CB_HALF_OPEN_MAX_REQUESTS: '3', CB_SUCCESS_THRESHOLD: '10', RETRY_MAX_RETRIES: '0'
  })
  t.equal((await http(port, '/api/users/1')).status, 503)
  await sleep(300)
  for (let i = 0; i < 3; i++) t.equal((await http(port, '/api/users/..x')).status, 200, `trial ${i + 1}`)
  t.equal(up.requests.at(-1)?.url, '/api/users/..x')
  t.equal((await http(port, '/api/users/1')).status, 200, 'no trial slot was kept')
})

t.test('a PUT with a JSON body is retried over a real socket, the same bytes each time', async (t) => {
  const up = await flakyUpstream(t, [503])
  const { app, port } = await gateway(t, [service('users', '/api/users', up.url)], { RETRY_INITIAL_DELAY_MS: '10' })
  const body = JSON.stringify({ data: 'x'.repeat(2000) })
  const res = await http(port, '/api/users/7', { method: 'PUT', body, headers: { 'content-type': 'application/json' } })
  t.equal(res.status, 200)
  t.equal(res.headers['x-retry-count'], '1')
  t.equal(up.requests.length, 2, 'tried twice')
  t.same(up.requests.map((r) => r.body.toString()), [body, body], 'both attempts carried the whole body')
  t.equal(metricValue(await metrics(app), 'gateway_retries_total', { service: 'users' }), 1)
})

t.test('bodies of any content type are proxied byte for byte, whatever the method', async (t) => {
  const up = await echoUpstream(t)
  const { port } = await gateway(t, [service('users', '/api/users', up.url)])
  const bytes = 'plain text\r\nwith lines \u00e9\n'
  for (const method of ['PUT', 'DELETE', 'OPTIONS', 'POST', 'PATCH']) {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/vnd.custom+json', 'multipart/form-data; boundary=x']) {
      const res = await http(port, '/api/users/1', { method, body: bytes, headers: { 'content-type': type, 'content-length': String(Buffer.byteLength(bytes)) } })
      t.equal(res.status, 200, `${method} ${type}`)
      const rec = up.requests.at(-1)
      t.equal(rec?.method, method)
      t.equal(rec?.body.toString(), bytes, `${method} ${type}: the same bytes`)
      t.equal(res.json().bodyLength, Buffer.byteLength(bytes))
      t.same(headerValues(rec?.rawHeaders ?? [], 'content-type'), [type])
    }
  }
})

t.test('a server-sent event stream quieter than the attempt timeout is not cut; silence past UPSTREAM_IDLE_TIMEOUT_MS is', async (t) => {
  const up = await recordingUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    const gap = req.url === '/sse/quiet' ? 1200 : 3000
    const timer = setTimeout(() => res.end('data: two\n\n'), gap)
    res.on('close', () => clearTimeout(timer))
  })
  const { port } = await gateway(t, [service('sse', '/sse', up.url)], { UPSTREAM_TIMEOUT_MS: '200', UPSTREAM_IDLE_TIMEOUT_MS: '1500' })
  const res = await http(port, '/sse/quiet')
  t.equal(res.status, 200)
  t.equal(res.body, 'data: one\n\ndata: two\n\n', 'both events arrive after a 1.2 s pause (attempt timeout 200 ms)')

  const cut = await http(port, '/sse/silent').then((r) => r.body, (err: Error) => `error: ${err.message}`)
  t.notMatch(cut, /two/, 'a 3 s silence is cut at the 1.5 s idle timeout')
})

t.test('stripPrefix gives the same path with or without a query string or trailing slash', async (t) => {
  const up = await echoUpstream(t)
  const { port } = await gateway(t, [service('strip', '/api/strip', up.url, { stripPrefix: true })])
  const cases: Array<[string, string]> = [
    ['/api/strip', '/'], ['/api/strip?q=1', '/?q=1'], ['/api/strip/', '/'], ['/api/strip/?q=1', '/?q=1'],
    ['/api/strip/a?q=1', '/a?q=1']
  ]
  for (const [sent, seen] of cases) {
    t.equal((await http(port, sent)).status, 200, sent)
    t.equal(up.requests.at(-1)?.url, seen, `${sent} reaches the backend as ${seen}`)
  }
})

t.test('keys in the query string, Proxy-Authorization and a client Forwarded never reach the backend', async (t) => {
  const up = await echoUpstream(t)
  const { port } = await gateway(t, [service('users', '/api/users', up.url)])
  const key = 'gw_' + 'A'.repeat(49)
  const res = await http(port, `/api/users/1?a=1&apikey=${key}&token=gw%5F${'B'.repeat(49)}&b=2`, {
    headers: { 'proxy-authorization': 'Basic dTpw', forwarded: 'for=6.6.6.6;proto=https', 'x-forwarded-for': '1.2.3.4' }
  })
  t.equal(res.status, 200)
  const rec = up.requests.at(-1)
  t.equal(rec?.url, '/api/users/1?a=1&b=2', 'gateway-key parameters removed, the rest kept in order')
  t.same(headerValues(rec?.rawHeaders ?? [], 'proxy-authorization'), [])
  t.same(headerValues(rec?.rawHeaders ?? [], 'forwarded'), [], 'the client Forwarded is not passed on')
  t.same(headerValues(rec?.rawHeaders ?? [], 'x-forwarded-for'), ['1.2.3.4, 127.0.0.1'])
  const plain = await http(port, '/api/users/1?key=value&q=gw')
  t.equal(plain.status, 200)
  t.equal(up.requests.at(-1)?.url, '/api/users/1?key=value&q=gw', 'ordinary parameters untouched')
})

t.test('a client that hangs up aborts the upstream request at once and counts as 499, not a backend error', async (t) => {
  const up = await slowUpstream(t, 5000)
  const { app, port } = await gateway(t, [service('users', '/api/users', up.url)], { UPSTREAM_TIMEOUT_MS: '10000' })
  for (const method of ['GET', 'POST']) {
    const before = up.requests.length
    await new Promise<void>((resolve) => {
      const req = httpRequest({ port, path: '/api/users/1', method, agent: false, headers: { 'content-type': 'application/json' } })
      req.on('error', () => resolve())
      req.end(method === 'POST' ? '{"a":1}' : undefined)
      // Hang up once the backend has the request (the POST's body has been read by then).
      until(() => up.requests.length > before, 10000).then(() => { req.destroy(); resolve() }, resolve)
    })
    t.equal(up.requests.length, before + 1, `${method}: the backend got the request`)
    const rec = up.requests.at(-1)
    t.ok(await until(() => rec?.aborted === true, 4000), `${method}: the backend saw its request aborted long before its 5 s answer`)
  }
  // The 499 is recorded when the gateway sees the client's socket close.
  await until(async () => metricValue(await metrics(app), 'gateway_http_requests_total', { method: 'POST', path: '/api/users', status: '499' }) === 1, 5000)
  const m = await metrics(app)
  t.equal(metricValue(m, 'gateway_backend_errors_total', { service: 'users' }), 0, 'no backend error counted')
  t.equal(metricValue(m, 'gateway_http_requests_total', { method: 'GET', path: '/api/users', status: '499' }), 1)
  t.equal(metricValue(m, 'gateway_http_requests_total', { method: 'POST', path: '/api/users', status: '499' }), 1)
  t.equal(metricValue(m, 'gateway_requests_in_flight'), 1, 'nothing in flight but the scrape itself')
})

t.test('dots inside a segment are names; only real . and .. segments (decoded or not) and backslashes are 400', async (t) => {
  const up = await echoUpstream(t)
  const { port } = await gateway(t, [service('users', '/api/users', up.url)])
  for (const path of ['/api/users/..hidden', '/api/users/a../b', '/api/users/.../x', '/api/users/.well-known/x', '/api/users/v1.2']) {
    t.equal((await http(port, path)).status, 200, path)
    t.equal(up.requests.at(-1)?.url, path, `${path} forwarded as sent`)
  }
  const forwarded = up.requests.length
  for (const path of ['/api/users/../x', '/api/users/./x', '/api/users/%2e%2e/x', '/api/users/%2E/x', '/api/users/a/..%2fb', '/api/users/a%5cb']) {
    const res = await http(port, path)
    t.equal(res.status, 400, path)
    t.equal(res.json().status, 'error')
  }
  const bs = await new Promise<string>((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write('GET /api/users/a\\b HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n'))
    let text = ''
    s.on('data', (c) => { text += c.toString() })
    s.on('close', () => resolve(text))
  })
  t.match(bs, /^HTTP\/1\.1 400/, 'a raw backslash')
  t.equal(up.requests.length, forwarded, 'none of them reached the backend')
})

t.test('percent-encoded unreserved characters route like their plain form', async (t) => {
  const up = await echoUpstream(t)
  const { port } = await gateway(t, [service('users', '/api/users', up.url)])
  t.equal((await http(port, '/api/%75sers/1')).status, 200)
  t.equal(up.requests.at(-1)?.url, '/api/users/1')
  t.equal((await http(port, '/api/users/a%2Fb')).status, 200, 'an encoded slash stays encoded')
  t.equal(up.requests.at(-1)?.url, '/api/users/a%2Fb')
})
