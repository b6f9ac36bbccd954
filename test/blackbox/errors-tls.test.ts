// Secrets (docs/reliability.md): SC-09 (every gateway-made error is a clean envelope), SC-10 (HTTPS
// upstream certificates are verified), SC-11 (body-less forwards never desynchronise the upstream).
import t from 'tap'
import { adminAuth, startGateway } from '../support/gateway-process.js'
import { http, nextIp } from '../support/http.js'
import { RawConnection } from '../support/raw-client.js'
import { isEnvelope, leaks, send, service } from '../support/suite.js'
import { echoUpstream, makeSelfSigned, refusedPort, slowUpstream, tlsUpstream } from '../support/upstreams.js'
import { sleep } from '../support/basics.js'

const echo = await echoUpstream(t)
const refused = await refusedPort()
const slow = await slowUpstream(t, 2000)
const gw = await startGateway(t, {
  services: [
    service('echo', '/api/echo', echo.url),
    service('secure', '/api/secure', echo.url, { auth: 'required' }),
    service('down', '/api/down', refused.url),
    service('tripped', '/api/tripped', refused.url),
    service('slow', '/api/slow', slow.url)
  ]
})

interface Seen { status: number, body: string, headers: Record<string, string[] | string | undefined>, appLevel: boolean }

t.test('SC-09 every gateway-made error is a generic envelope with no internals', async (t) => {
  const seen: Array<[string, Seen]> = []
  const viaHttp = async (label: string, path: string, opts: Parameters<typeof http>[2] = {}): Promise<void> => {
    const r = await http(gw.port, path, { localAddress: nextIp(), ...opts })
    seen.push([label, { status: r.status, body: r.body, headers: r.headers, appLevel: true }])
  }
  const viaRaw = async (label: string, bytes: string, appLevel: boolean, deadlineMs = 3000): Promise<void> => {
    const r = await send(gw, bytes, { deadlineMs, settleMs: 0 })
    const res = r.responses.find((x) => x.status >= 200)
    seen.push([label, { status: res?.status ?? 0, body: res?.body.toString('utf8') ?? '', headers: res?.headers ?? {}, appLevel }])
  }
  await viaRaw('400 parser', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nfoo bar\r\n\r\n', false)
  await viaRaw('400 framing guard', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nHost: h\r\n\r\n', true)
  await viaHttp('400 validation', '/admin/apikeys', { method: 'POST', headers: { authorization: adminAuth(), 'content-type': 'application/json' }, body: '{"name":123}' })
  await viaHttp('401 key', '/api/secure/x')
  await viaHttp('401 admin', '/admin/apikeys')
  await viaHttp('404', '/no/such/route')
  await viaRaw('405', 'TRACE /api/echo/x HTTP/1.1\r\nHost: g\r\n\r\n', true)
  await viaRaw('408', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nX-Slow: a', false, 8000)
  await viaHttp('413', '/admin/apikeys', { method: 'POST', headers: { authorization: adminAuth(), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x'.repeat(70000) }) })
  await viaHttp('415', '/admin/apikeys', { method: 'POST', headers: { authorization: adminAuth(), 'content-type': 'application/xml' }, body: '<a/>' })
  const ip = nextIp()
  let limited = null
  for (let i = 0; i < 40 && limited === null; i++) {
    const r = await http(gw.port, '/api/echo/burst', { localAddress: ip })
    if (r.status === 429) limited = r
  }
  if (limited !== null) seen.push(['429', { status: 429, body: limited.body, headers: limited.headers, appLevel: true }])
  else t.fail('429: the bucket never ran dry')
  await viaRaw('431 too many fields', 'GET /api/echo HTTP/1.1\r\nHost: g\r\n' + Array.from({ length: 120 }, (_, i) => `X-H${i}: v\r\n`).join('') + '\r\n', true)
  await viaRaw('431 too large', `GET /api/echo HTTP/1.1\r\nHost: g\r\nX-Big: ${'z'.repeat(20000)}\r\n\r\n`, false)
  await viaHttp('502', '/api/down/x')
  for (let i = 0; i < 6; i++) await http(gw.port, '/api/tripped/x', { localAddress: nextIp() })
  await viaHttp('503 breaker open', '/api/tripped/x')
  await viaHttp('504', '/api/slow/x')

  const expected: Record<string, number> = {
    '400 parser': 400, '400 framing guard': 400, '400 validation': 400, '401 key': 401, '401 admin': 401, 404: 404, 405: 405, 408: 408, 413: 413, 415: 415, 429: 429, '431 too many fields': 431, '431 too large': 431, 502: 502, '503 breaker open': 503, 504: 504
  }
  for (const [label, s] of seen) {
    t.equal(s.status, expected[label], `${label}: status`)
    t.ok(isEnvelope(s.body), `${label}: the error envelope (${s.body.slice(0, 120)})`)
    t.same(leaks(s.body), [], `${label}: no stack, errno, address, path or dependency text`)
    t.equal(s.headers['x-powered-by'], undefined, `${label}: no X-Powered-By`)
    if (s.appLevel) {
      let id: unknown
      try { id = JSON.parse(s.body).request_id } catch {}
      const header = s.headers['x-request-id']
      t.ok(typeof id === 'string' || (header !== undefined && String(header) !== ''), `${label}: carries the request id`)
    }
  }
  await sleep(0)
})

t.test('SC-10 an untrusted self-signed HTTPS upstream is refused; trusted through its CA it works', async (t) => {
  const cert = makeSelfSigned(t)
  const up = await tlsUpstream(t, cert)
  const untrusted = await startGateway(t, { services: [service('tls', '/api/tls', up.url)] })
  const logStart = untrusted.logs.length
  const r1 = await http(untrusted.port, '/api/tls/x', { localAddress: nextIp() })
  t.equal(r1.status, 502, 'untrusted certificate: 502')
  t.same(leaks(r1.body), [], 'untrusted certificate: no TLS internals in the body')
  t.equal(up.requests.length, 0, 'untrusted certificate: nothing reached the upstream application')
  await untrusted.logsSettled()
  t.ok(untrusted.logs.slice(logStart).some((l) => l.event === 'upstream_tls_error'), 'logged as event=upstream_tls_error')

  const trusted = await startGateway(t, { services: [service('tls', '/api/tls', up.url)], env: { NODE_EXTRA_CA_CERTS: cert.certFile } })
  const r2 = await http(trusted.port, '/api/tls/x', { localAddress: nextIp() })
  t.equal(r2.status, 200, 'trusted through NODE_EXTRA_CA_CERTS: 200')
  t.equal(up.requests.length, 1, 'trusted: the upstream got the request')
})

t.test('SC-11 body-less forwards never send a Content-Length without its body', async (t) => {
  for (const method of ['GET', 'HEAD']) {
    const before = echo.requests.length
    const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
    t.teardown(() => conn.destroy())
    await conn.write(`${method} /api/echo/first HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\r\nabcde`, { head: method === 'HEAD' })
    await conn.waitForResponses(1, 3000)
    await conn.write(`${method} /api/echo/second HTTP/1.1\r\nHost: g\r\n\r\n`, { head: method === 'HEAD' })
    await conn.waitForResponses(2, 3000)
    const finals = conn.finals()
    t.equal(finals[0]?.status, 200, `${method}: first request served`)
    t.ok(finals.length === 2 ? finals[1].status === 200 : conn.closed, `${method}: the second request on the socket is served, or the gateway closed the connection (${finals.map((f) => f.status).join(',')})`)
    const fresh = echo.requests.slice(before)
    for (const rec of fresh) {
      const cl = rec.headers['content-length']
      t.ok(cl === undefined || Number(cl) === rec.body.length, `${method} ${rec.url}: no Content-Length without its body (cl=${cl}, body=${rec.body.length})`)
    }
    t.notOk(fresh.some((r) => r.url.includes('abcde') || r.method.includes('abcde')), `${method}: the unread body is never parsed as a request`)
  }
  // The upstream connection is reused cleanly afterwards.
  const after = await http(gw.port, '/api/echo/third', { localAddress: nextIp() })
  t.equal(after.status, 200, 'the next request is served')
  t.same(echo.clientErrors, [], 'the upstream never saw a parse error')

  for (const body of ['0', 'false']) {
    const before = echo.requests.length
    const res = await http(gw.port, '/api/echo/json', { method: 'POST', headers: { 'content-type': 'application/json' }, body, localAddress: nextIp() })
    t.equal(res.status, 200, `POST JSON ${body}: served`)
    const rec = echo.requests[before]
    t.equal(rec?.body.toString(), body, `POST JSON ${body}: the body arrives`)
    t.equal(Number(rec?.headers['content-length'] ?? rec?.body.length), body.length, `POST JSON ${body}: with a matching length`)
  }
})
