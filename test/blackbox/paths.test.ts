// Bad input (docs/reliability.md), paths, methods and injected header values: BI-14, BI-15, BI-16,
// BI-26, and keys in the query string (SC-05). Two services: `echo` at /api/echo and `other` at
// /api/other (each its own recording upstream), so a request that escapes its prefix or changes
// upstream is visible.
import { posix } from 'node:path'
import t from 'tap'
import { startGateway } from '../support/gateway-process.js'
import { http, nextIp } from '../support/http.js'
import { send, service } from '../support/suite.js'
import { echoUpstream, headerValues, rawUpstream, type Recorded } from '../support/upstreams.js'
import { withoutKeyParams } from '../../plugins/proxy/paths.js'
import { generateApiKey } from '../../lib/api-key-format.js'

const echo = await echoUpstream(t)
const other = await echoUpstream(t)
// Answers with a Location carrying an encoded CR LF (BI-16).
const redirector = await rawUpstream(t, (socket) => {
  socket.write('HTTP/1.1 302 Found\r\nLocation: /next%0d%0aX-Injected:%201\r\nContent-Length: 0\r\n\r\n')
})
const gw = await startGateway(t, {
  services: [
    service('echo', '/api/echo', echo.url),
    service('other', '/api/other', other.url),
    service('redirector', '/api/redir', redirector.url)
  ]
})

/** Decodes once (as a backend would) and resolves dot segments and backslashes. */
function effectivePath (url: string): string {
  let p = url.split('?')[0]
  try { p = decodeURIComponent(p) } catch {}
  return posix.normalize(p.replace(/\\/g, '/'))
}

function insidePrefix (rec: Recorded, prefix: string): boolean {
  const p = effectivePath(rec.url)
  return p === prefix || p.startsWith(prefix + '/')
}

t.test('BI-14 path traversal never leaves the route prefix and never reaches the admin API', async (t) => {
  const paths = [
    '/api/echo/../../admin/apikeys',
    '/api/echo/%2e%2e/%2e%2e/admin/apikeys',
    '/api/echo/..%2f..%2fadmin/apikeys',
    '/api/echo/..\\admin',
    '/api/echo/%252e%252e/admin',
    '/api/echo/../other/x'
  ]
  for (const path of paths) {
    const before = echo.requests.length + other.requests.length
    const res = await send(gw, `GET ${path} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n`)
    const r = res.responses.find((x) => x.status >= 200)
    const status = r?.status ?? 0
    t.ok(status === 400 || status === 404 || (status >= 200 && status < 300), `${path}: 400, 404 or served inside the prefix (got ${status})`)
    t.not(r?.headers['www-authenticate']?.[0]?.startsWith('Basic'), true, `${path}: the admin API did not answer`)
    const fresh = [...echo.requests, ...other.requests].length - before
    if (status >= 200 && status < 300) {
      const rec = echo.requests.at(-1)
      t.ok(rec !== undefined && insidePrefix(rec, '/api/echo'), `${path}: the upstream path stays inside /api/echo (${rec?.url})`)
    }
    t.equal(other.requests.length, 0, `${path}: the other service received nothing`)
    t.ok(fresh <= 1, `${path}: at most one forward`)
  }
  // WebSocket upgrade aimed outside the prefix.
  const ws = await send(gw, 'GET /api/echo/../admin HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  t.notOk(ws.statuses.includes(101), 'the WebSocket upgrade to /api/echo/../admin is not switched')
  t.ok(echo.requests.every((r) => insidePrefix(r, '/api/echo')), 'the echo upstream never saw a path outside its prefix')
})

t.test('BI-15 encoded and doubled slashes follow one policy and never change the upstream', async (t) => {
  const paths = [
    '/api/echo/a%2Fb',
    '/api/echo/a%2f..%2fb',
    '//api//echo/x',
    '/api/echo//evil.example/x',
    '/%61pi/echo/x',
    '/api/%65cho/x'
  ]
  for (const path of paths) {
    const before = echo.requests.length
    const res = await send(gw, `GET ${path} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n`)
    const status = res.responses.find((x) => x.status >= 200)?.status ?? 0
    t.ok(status < 500 && status > 0, `${path}: answered without a server error (got ${status})`)
    if (status >= 200 && status < 300) {
      const rec = echo.requests[before]
      t.ok(rec !== undefined, `${path}: served by the echo upstream`)
      if (rec !== undefined) {
        t.ok(insidePrefix(rec, '/api/echo'), `${path}: forwarded inside the prefix (${rec.url})`)
        t.equal(headerValues(rec.rawHeaders, 'host').length, 1, `${path}: one Host upstream`)
        t.notMatch(rec.headers.host ?? '', /evil/, `${path}: the upstream host never changes`)
      }
    } else {
      t.ok([400, 404, 307, 308].includes(status), `${path}: rejected (400/404) or redirected (got ${status})`)
    }
  }
  // The encoded prefix is either routed like the literal one or rejected, never partly rewritten.
  t.equal(other.requests.length, 0, 'no request reached the other service')
})

t.test('BI-16 injected header values never become headers', async (t) => {
  const before = echo.requests.length
  const encoded = await send(gw, 'GET /api/echo/x%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  t.equal(encoded.statuses.length, 1, 'encoded CR LF in the path: one response on the wire')
  for (const rec of echo.requests.slice(before)) t.equal(headerValues(rec.rawHeaders, 'x-injected').length, 0, 'the upstream never sees X-Injected')

  const long = 'r'.repeat(300)
  const res1 = await http(gw.port, '/api/echo/rid', { headers: { 'x-request-id': long }, localAddress: nextIp() })
  const seen1 = headerValues(echo.requests.at(-1)?.rawHeaders ?? [], 'x-request-id')
  t.equal(res1.status, 200, '300-char request id: served')
  t.not(res1.headers['x-request-id'], long, '300-char request id: replaced on the response')
  t.match(String(res1.headers['x-request-id']), /^[A-Za-z0-9._-]{1,128}$/, '300-char request id: the replacement is valid')
  t.same(seen1, [res1.headers['x-request-id']], '300-char request id: the upstream sees the same, single, valid id')

  const res2 = await send(gw, Buffer.from('GET /api/echo/rid2 HTTP/1.1\r\nHost: g\r\nX-Request-Id: caf\u00e9-\u00ff\r\nConnection: close\r\n\r\n', 'latin1'))
  const r2 = res2.responses.find((x) => x.status >= 200)
  t.equal(r2?.status, 200, 'non-ASCII request id: served')
  t.match(r2?.headers['x-request-id']?.[0] ?? '', /^[A-Za-z0-9._-]{1,128}$/, 'non-ASCII request id: replaced by a valid one')

  const valid = 'abc-123.DEF_456'
  const res3 = await http(gw.port, '/api/echo/rid3', { headers: { 'x-request-id': valid }, localAddress: nextIp() })
  t.equal(res3.headers['x-request-id'], valid, 'a valid request id is kept')

  const raw = await send(gw, 'GET /api/echo/rid4 HTTP/1.1\r\nHost: g\r\nX-Request-Id: a\rX-Injected: 1\r\n\r\n')
  t.same(raw.statuses, [400], 'a raw CR inside X-Request-Id: 400 at the parser')
  t.ok(raw.closedWithin1s, 'a raw CR inside X-Request-Id: connection closed')

  const redir = await send(gw, 'GET /api/redir/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  const rr = redir.responses.find((x) => x.status >= 200)
  t.equal(redir.statuses.length, 1, 'upstream Location with encoded CR LF: one response on the wire')
  t.equal(rr?.headers['x-injected'], undefined, 'upstream Location with encoded CR LF: no X-Injected header reaches the client')
})

t.test('BI-26 unneeded methods and target forms are refused and not forwarded', async (t) => {
  const before = echo.requests.length
  const cases: Array<[string, string]> = [
    ['TRACE', 'TRACE /api/echo/x HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer secret-token\r\n\r\n'],
    ['CONNECT', 'CONNECT g:443 HTTP/1.1\r\nHost: g:443\r\n\r\n'],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: g\r\n\r\n'],
    ['unknown method FOO', 'FOO /api/echo/x HTTP/1.1\r\nHost: g\r\n\r\n']
  ]
  for (const [label, bytes] of cases) {
    const res = await send(gw, bytes)
    const status = res.responses.find((x) => x.status >= 200)?.status
    t.ok(status === 405 || status === 400, `${label}: 405 or 400 (got ${status ?? 'no response'}${res.error !== null ? ', ' + res.error : ''})`)
    t.notMatch(res.raw, /secret-token/, `${label}: request headers are never echoed`)
  }
  t.equal(echo.requests.length, before, 'nothing was forwarded')
})

// A gateway key in the query string, in every form a client might send it (docs/architecture.md,
// step 10): removed before forwarding, everything else kept byte for byte and in order.
const KEY = generateApiKey().raw
const pct = (s: string) => [...s].map((c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')).join('')
const KEY_FORMS: Array<[string, string]> = [
  ['raw value', `k=${KEY}`],
  ['every character percent-encoded', `x=${pct(KEY)}`],
  ['prefix percent-encoded', `x=${pct('gw_')}${KEY.slice(3)}`],
  ['only the g encoded, lower-case escapes', `x=%67w_${KEY.slice(3)}`],
  ['underscore encoded in lower case', `x=gw%5f${KEY.slice(3)}`],
  ['double-encoded', `x=${pct(pct(KEY))}`],
  ['bare parameter', KEY],
  ['bare parameter, encoded', pct(KEY)],
  ['as the name', `${KEY}=`],
  ['as the name with a value', `${KEY}=1`],
  ['encoded name', `${pct('gw_')}${KEY.slice(3)}=x`],
  ['inside a longer value', `auth=Bearer%20${KEY}`],
  ['after an encoded separator', `x=a%26b%3D${KEY}`],
  ['after a semicolon', `x=1;k=${KEY}`],
  ['followed by more characters', `x=${KEY}AAAA`]
]

t.test('withoutKeyParams removes a gateway key as a value, name or bare parameter, encoded or not', async (t) => {
  for (const [label, part] of KEY_FORMS) {
    t.equal(withoutKeyParams(part), '', `${label}: alone`)
    t.equal(withoutKeyParams(`a=1&${part}&b=%20x&a=2`), 'a=1&b=%20x&a=2', `${label}: the others kept byte for byte, in order`)
    t.equal(withoutKeyParams(`${part}&${part}`), '', `${label}: twice`)
  }
})

t.test('withoutKeyParams keeps every part that holds no key, exactly as sent', async (t) => {
  const kept = [
    'a=1&b=2&a=3',
    'q=gw&key=value',
    'gw_id=5&gw_region=eu', // names that merely start with gw_
    `x=${KEY.slice(0, 30)}`, // far shorter than a key
    `x=GW_${KEY.slice(3)}`, // the prefix is lower case
    'c=%E2%82%AC&d=%&e=%zz&f=a+b',
    `long=${'A'.repeat(200)}`,
    ''
  ]
  for (const q of kept) t.equal(withoutKeyParams(q), q, q.slice(0, 40))
})

t.test('SC-05 a gateway key in the query string never reaches the backend, in any form', async (t) => {
  const since = gw.logs.length
  for (const [label, part] of KEY_FORMS) {
    const before = echo.requests.length
    const res = await http(gw.port, `/api/echo/q?a=1&${part}&b=%20x&a=2`, { localAddress: nextIp() })
    t.equal(res.status, 200, `${label}: served`)
    const rec = echo.requests[before]
    t.equal(rec?.url, '/api/echo/q?a=1&b=%20x&a=2', `${label}: removed, the rest intact and in order`)
  }
  const res = await http(gw.port, `/api/echo/q?${KEY}`, { localAddress: nextIp() })
  t.equal(res.status, 200)
  t.equal(echo.requests.at(-1)?.url, '/api/echo/q', 'a query of nothing but a key leaves no `?`')
  const seen = echo.requests.map((r) => r.url).join('\n')
  const secret = KEY.slice(3)
  t.notOk(seen.includes(secret) || seen.includes(pct(secret).slice(0, 30)), 'no form of the key reached the backend')
  await gw.logsSettled()
  const logged = JSON.stringify(gw.logs.slice(since))
  t.notOk(logged.includes(secret) || logged.includes(pct(secret).slice(0, 30)), 'nor the log')
})
