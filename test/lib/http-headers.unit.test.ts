// The header policy's functions (lib/http-headers.ts), in process, on plain objects shaped
// like the request and reply they read. The black-box cases (BI-17…BI-21) send real requests
// through a gateway: test/blackbox/headers.test.ts.
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { clientHeaders, countExceeds, upstreamHeaders } from '../../lib/http-headers.js'

interface RequestShape {
  headers: IncomingHttpHeaders
  method?: string
  peer?: string
  consumer?: { id: string, name: string } | null
  protocol?: string
  ip?: string
  id?: string
}

/** What upstreamHeaders reads of a request; header names lower-case, as Node gives them. */
function request (r: RequestShape): FastifyRequest {
  return {
    raw: { headers: r.headers, method: r.method ?? 'GET', socket: { remoteAddress: r.peer ?? '10.0.0.9' } },
    consumer: r.consumer ?? null,
    protocol: r.protocol ?? 'http',
    ip: r.ip ?? r.peer ?? '10.0.0.9',
    id: r.id ?? 'req-1'
  } as unknown as FastifyRequest
}

function reply (own: Record<string, string | number | string[]> = {}): FastifyReply {
  return { getHeaders: () => ({ ...own }) } as unknown as FastifyReply
}

const GATEWAY_SET = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip', 'x-request-id']

t.test('upstreamHeaders drops hop-by-hop fields and the ones Connection names', async (t) => {
  const out = upstreamHeaders(request({
    headers: Object.fromEntries([
      ['host', 'gw.example'], ['connection', 'keep-alive, X-Foo, close'], ['x-foo', '1'], ['x-bar', '2'], ['keep-alive', 'timeout=5'],
      ['proxy-connection', 'keep-alive'], ['proxy', 'http://evil.example'], ['upgrade', 'h2c'], ['http2-settings', 'AAA'],
      ['expect', '100-continue'], ['transfer-encoding', 'chunked'], ['trailer', 'x-t'], ['proxy-authorization', 'Basic eA=='],
      ['accept', 'text/plain']
    ])
  }))
  t.same(Object.keys(out).filter((n) => !GATEWAY_SET.includes(n)).sort(), ['accept', 'x-bar'], 'only end-to-end fields are copied')
  t.equal(out.host, undefined, 'Host is the backend\'s, set per attempt')
})

t.test('upstreamHeaders keeps everything when Connection names no field', async (t) => {
  for (const connection of ['close', 'keep-alive', 'Keep-Alive, close', ' , ']) {
    const out = upstreamHeaders(request({ headers: { connection, 'x-foo': '1' } }))
    t.equal(out['x-foo'], '1', `Connection: ${connection}`)
    t.equal(out.connection, undefined)
  }
})

t.test('upstreamHeaders strips gateway credentials and passes a backend\'s own Authorization', async (t) => {
  t.equal(upstreamHeaders(request({ headers: { 'x-api-key': 'gw_abc' } }))['x-api-key'], undefined, 'X-API-Key never leaves')
  t.equal(upstreamHeaders(request({ headers: { authorization: 'Bearer gw_abc' } })).authorization, undefined, 'a gateway Bearer never leaves')
  t.equal(upstreamHeaders(request({ headers: { authorization: 'bearer\tgw_abc' } })).authorization, undefined, 'by the same rule as authentication')
  t.equal(upstreamHeaders(request({ headers: { authorization: 'Bearer eyJ.x.y' } })).authorization, 'Bearer eyJ.x.y', 'another Bearer is the backend\'s')
  t.equal(upstreamHeaders(request({ headers: { authorization: 'Basic dTpw' } })).authorization, 'Basic dTpw')
})

t.test('upstreamHeaders replaces identity fields with the consumer\'s', async (t) => {
  const spoofed = { 'x-consumer-id': 'admin', 'x-consumer-name': 'root', 'x-consumer-username': 'root', 'x-consumer-groups': 'all' }
  const anonymous = upstreamHeaders(request({ headers: { ...spoofed } }))
  t.same(Object.keys(anonymous).filter((n) => n.startsWith('x-consumer-')), [], 'anonymous: no X-Consumer-* at all')
  const keyed = upstreamHeaders(request({ headers: { ...spoofed }, consumer: { id: 'k1', name: 'c1' } }))
  t.same(Object.keys(keyed).filter((n) => n.startsWith('x-consumer-')).sort(), ['x-consumer-id', 'x-consumer-name'])
  t.equal(keyed['x-consumer-id'], 'k1')
  t.equal(keyed['x-consumer-name'], 'c1')
})

t.test('upstreamHeaders writes the forwarding fields itself', async (t) => {
  const spoofing = upstreamHeaders(request({
    headers: { host: 'gw.example:8080', forwarded: 'for=203.0.113.1', 'x-real-ip': '203.0.113.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil', 'x-request-id': 'client-id' },
    peer: '10.1.1.1',
    ip: '10.1.1.1',
    protocol: 'http',
    id: 'gw-id'
  }))
  t.equal(spoofing.forwarded, undefined, 'a client Forwarded is removed')
  t.equal(spoofing['x-forwarded-for'], '10.1.1.1', 'X-Forwarded-For is the peer when the client sent none')
  t.equal(spoofing['x-forwarded-proto'], 'http')
  t.equal(spoofing['x-forwarded-host'], 'gw.example:8080', 'X-Forwarded-Host is the Host the client sent')
  t.equal(spoofing['x-real-ip'], '10.1.1.1', 'X-Real-IP is the client address the gateway decided')
  t.equal(spoofing['x-request-id'], 'gw-id', 'X-Request-Id is the request\'s id')

  const chained = upstreamHeaders(request({ headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.1' }, peer: '10.0.0.2', ip: '203.0.113.7' }))
  t.equal(chained['x-forwarded-for'], '203.0.113.7, 10.0.0.1, 10.0.0.2', 'the peer is appended to a received chain')
  t.equal(chained['x-real-ip'], '203.0.113.7')
  t.equal(upstreamHeaders(request({ headers: { 'x-forwarded-for': '' }, peer: '10.0.0.3' }))['x-forwarded-for'], '10.0.0.3', 'an empty chain is no chain')
})

t.test('upstreamHeaders forwards TE only as "trailers"', async (t) => {
  t.equal(upstreamHeaders(request({ headers: { te: 'trailers, deflate;q=0.5' } })).te, 'trailers')
  t.equal(upstreamHeaders(request({ headers: { te: 'deflate, Trailers' } })).te, 'trailers', 'case-insensitive, anywhere in the list')
  t.equal(upstreamHeaders(request({ headers: { te: 'trailers;q=1' } })).te, 'trailers')
  t.equal(upstreamHeaders(request({ headers: { te: 'deflate' } })).te, undefined)
  t.equal(upstreamHeaders(request({ headers: { te: 'nottrailers' } })).te, undefined, 'a token that only contains "trailers" is not it')
})

t.test('upstreamHeaders drops Content-Length of a GET or HEAD and keeps it otherwise', async (t) => {
  t.equal(upstreamHeaders(request({ headers: { 'content-length': '5' }, method: 'GET' }))['content-length'], undefined)
  t.equal(upstreamHeaders(request({ headers: { 'content-length': '5' }, method: 'HEAD' }))['content-length'], undefined)
  t.equal(upstreamHeaders(request({ headers: { 'content-length': '5' }, method: 'POST' }))['content-length'], '5')
})

t.test('upstreamHeaders keeps repeated fields as Node gives them', async (t) => {
  const out = upstreamHeaders(request({ headers: { 'set-cookie': ['a=1', 'b=2'], accept: 'a, b' } }))
  t.same(out['set-cookie'], ['a=1', 'b=2'])
  t.equal(out.accept, 'a, b')
})

t.test('clientHeaders drops hop-by-hop and backend rate-limit fields, then adds the gateway\'s', async (t) => {
  const upstream = Object.fromEntries([
    ['content-type', 'application/json'], ['connection', 'keep-alive, X-Hop'], ['x-hop', '1'], ['keep-alive', 'max=77'],
    ['proxy-connection', 'x'], ['upgrade', 'h2c'], ['trailer', 'x-t'], ['transfer-encoding', 'chunked'], ['te', 'trailers'],
    ['x-ratelimit-limit', '9'], ['x-ratelimit-remaining', '8'], ['x-ratelimit-reset', '7'], ['ratelimit', 'x'], ['ratelimit-policy', 'y'],
    ['x-request-id', 'backend-id'], ['x-end-to-end', 'kept'], ['skipped', undefined]
  ])
  const out = clientHeaders(upstream, reply({ 'x-request-id': 'gw-id', 'x-ratelimit-limit': 20 }), null)
  t.same(out, { 'content-type': 'application/json', 'x-end-to-end': 'kept', skipped: undefined, 'x-request-id': 'gw-id', 'x-ratelimit-limit': 20 })
})

t.test('clientHeaders merges Vary from both sides', async (t) => {
  t.equal(clientHeaders({ vary: 'Accept-Encoding' }, reply({ vary: 'Origin' }), null).vary, 'Accept-Encoding, Origin')
  t.equal(clientHeaders({}, reply({ vary: 'Origin' }), null).vary, 'Origin')
  t.equal(clientHeaders({ vary: 'Accept' }, reply(), null).vary, 'Accept')
})

t.test('clientHeaders carries what the gateway set on the reply (X-Retry-Count after a retry)', async (t) => {
  t.equal(clientHeaders({}, reply(), null)['x-retry-count'], undefined, 'none without a retry')
  t.equal(clientHeaders({ 'x-retry-count': '9' }, reply({ 'x-retry-count': '2' }), null)['x-retry-count'], '2', 'the gateway\'s count wins')
})

t.test('clientHeaders gives a stripped prefix back to a backend\'s own Location paths', async (t) => {
  const location = (value: string, prefix: string | null): unknown => clientHeaders({ location: value }, reply(), prefix).location
  t.equal(location('/login', '/api/users'), '/api/users/login')
  t.equal(location('/login', null), '/login', 'no prefix stripped: as sent')
  t.equal(location('//evil.example/x', '/api/users'), '//evil.example/x', 'a network-path reference is not a path')
  t.equal(location('https://other.example/x', '/api/users'), 'https://other.example/x', 'an absolute URL is left alone')
  t.equal(location('next', '/api/users'), 'next', 'a relative path is left alone')
})

t.test('countExceeds counts own names only, stopping past the limit', async (t) => {
  t.notOk(countExceeds({}, 0))
  t.ok(countExceeds({ a: 1 }, 0))
  t.notOk(countExceeds({ a: 1, b: 2, c: 3 }, 3))
  t.ok(countExceeds({ a: 1, b: 2, c: 3, d: 4 }, 3))
  const inherited = Object.assign(Object.create({ x: 1, y: 2 }) as object, { a: 1 })
  t.notOk(countExceeds(inherited, 1), 'inherited names are not fields')
})

t.test('upstreamHeaders gives a JWT consumer\'s subject and issuer, and drops the token when told to', async (t) => {
  const token = { subject: 'alice', issuer: 'https://idp.example', forward: true }
  const jwt = upstreamHeaders(request({ headers: { authorization: 'Bearer eyJ.x.y', 'x-consumer-issuer': 'evil' }, consumer: { id: 'jwt:https://idp.example:alice', name: 'alice', token } as never }))
  t.equal(jwt['x-consumer-id'], 'alice', 'X-Consumer-Id is the subject, not the bucket id')
  t.equal(jwt['x-consumer-issuer'], 'https://idp.example')
  t.equal(jwt['x-consumer-name'], undefined)
  t.equal(jwt.authorization, 'Bearer eyJ.x.y', 'forwarded by default')
  const stripped = upstreamHeaders(request({ headers: { authorization: 'Bearer eyJ.x.y' }, consumer: { id: 'j', name: 'alice', token: { ...token, forward: false } } as never }))
  t.equal(stripped.authorization, undefined, 'JWT_FORWARD_TOKEN=false')
})
