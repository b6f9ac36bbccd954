// Bad input (docs/reliability.md), headers the gateway must rewrite or refuse: BI-17 (spoofed
// client address), BI-18 (spoofed identity), BI-19/BI-20 (hop-by-hop, both directions), BI-21
// (Expect).
import t from 'tap'
import { adminAuth, startGateway } from '../support/gateway-process.js'
import { createKey, http, nextIp, type HttpResponse } from '../support/http.js'
import { httpMessage, RawConnection } from '../support/raw-client.js'
import { isEnvelope, send, service } from '../support/suite.js'
import { echoUpstream, headerValues, hopByHopUpstream } from '../support/upstreams.js'
import { sleep } from '../support/basics.js'

const C = 20
const R = 10 // tokens per second (RATE_LIMIT_RPM=600)
const echo = await echoUpstream(t)
const hop = await hopByHopUpstream(t)
const services = [
  service('echo', '/api/echo', echo.url),
  service('secure', '/api/secure', echo.url, { auth: 'required' }),
  service('hop', '/api/hop', hop.url)
]
const gw = await startGateway(t, { services })
const c1 = await createKey(gw.port, { name: 'c1' }, nextIp())

interface Burst { admitted: number, limited: number, seconds: number, statuses: number[] }

/** 100 anonymous requests from `localAddress`, 10 at a time, each with fresh spoofed address headers. */
async function spoofBurst (port: number, localAddress: string, tag: string): Promise<Burst> {
  const started = Date.now()
  const statuses: number[] = []
  for (let batch = 0; batch < 10; batch++) {
    const res = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const n = batch * 10 + i + 1
      return await http(port, `/api/echo/${tag}/${n}`, {
        localAddress,
        headers: { 'x-forwarded-for': `203.0.113.${n}`, 'x-real-ip': `203.0.113.${n}`, forwarded: `for=203.0.113.${n}` }
      })
    }))
    statuses.push(...res.map((r) => r.status))
  }
  return {
    admitted: statuses.filter((s) => s === 200).length,
    limited: statuses.filter((s) => s === 429).length,
    seconds: (Date.now() - started) / 1000,
    statuses
  }
}

/**
 * Rounds of 50 concurrent anonymous requests from `localAddress`, each with fresh spoofed address
 * headers, until one is limited: a round is far more than the bucket refills (r = 10/s) while it
 * runs, so the socket address's bucket runs dry within a round or two however busy the machine.
 * Resolves with the first 429, or null when 5 rounds got none (spoofing picked the bucket).
 */
async function firstLimited (port: number, localAddress: string, tag: string): Promise<HttpResponse | null> {
  for (let round = 0; round < 5; round++) {
    const res = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const n = 1 + i + 50 * round
      return await http(port, `/api/echo/${tag}/${n}`, {
        localAddress,
        headers: { 'x-forwarded-for': `198.51.100.${n}`, 'x-real-ip': `198.51.100.${n}`, forwarded: `for=198.51.100.${n}` }
      })
    }))
    const limited = res.find((r) => r.status === 429)
    if (limited !== undefined) return limited
  }
  return null
}

t.test('BI-17 spoofed X-Forwarded-For, X-Real-IP and Forwarded do not pick the rate-limit bucket', async (t) => {
  const ip = nextIp()
  const before = echo.requests.length
  const b = await spoofBurst(gw.port, ip, 'spoof')
  const bound = C + R * b.seconds + 1
  t.ok(b.admitted <= bound, `admitted ${b.admitted} ≤ C + r·T + 1 = ${bound.toFixed(1)}`)
  t.equal(b.admitted + b.limited, 100, `only 200 or 429 (${[...new Set(b.statuses)].join(', ')})`)
  const seen = echo.requests.slice(before)
  t.ok(seen.length > 0, 'some requests were forwarded')
  for (const rec of seen.slice(0, 5)) {
    const xff = headerValues(rec.rawHeaders, 'x-forwarded-for')
    t.equal(xff.length, 1, 'one X-Forwarded-For upstream')
    const hops = (xff[0] ?? '').split(',').map((s) => s.trim())
    t.equal(hops.at(-1), ip, `X-Forwarded-For ends with the socket address (${xff[0]})`)
    const realIp = headerValues(rec.rawHeaders, 'x-real-ip')
    t.ok(realIp.length === 0 || (realIp.length === 1 && realIp[0] === ip), `X-Real-IP is absent or the socket address (${realIp.join(', ')})`)
  }
  const limited = await firstLimited(gw.port, ip, 'spoof-after')
  t.ok(limited !== null, 'the bucket of the socket address runs dry whatever the spoofed headers say')
  t.ok(Number(limited?.headers['retry-after']) >= 1, '429 carries Retry-After')
  t.ok(limited?.headers['ratelimit'] !== undefined || limited?.headers['x-ratelimit-limit'] !== undefined, '429 carries rate-limit fields')
})

t.test('BI-17 with one trusted proxy, the client address comes from X-Forwarded-For only when the peer is trusted', async (t) => {
  const echo2 = await echoUpstream(t)
  const gw2 = await startGateway(t, { services: [service('echo', '/api/echo', echo2.url)], env: { TRUST_PROXY: '127.0.0.2' } })
  const viaLb = await spoofBurst(gw2.port, '127.0.0.2', 'lb')
  t.equal(viaLb.admitted, 100, `through the trusted proxy each forwarded address has its own bucket (${viaLb.admitted} admitted)`)
  const rec = echo2.requests[0]
  const hops = (headerValues(rec?.rawHeaders ?? [], 'x-forwarded-for')[0] ?? '').split(',').map((s) => s.trim())
  t.same(hops.slice(-2), ['203.0.113.1', '127.0.0.2'], 'X-Forwarded-For keeps the client and appends the proxy')

  const direct = await spoofBurst(gw2.port, '127.0.0.3', 'direct')
  const bound = C + R * direct.seconds + 1
  t.ok(direct.admitted <= bound, `from an untrusted peer the header is ignored: admitted ${direct.admitted} ≤ ${bound.toFixed(1)}`)
  t.ok(await firstLimited(gw2.port, '127.0.0.3', 'direct-after') !== null, 'the untrusted peer is limited by its socket address')
})

t.test('BI-18 client-sent identity headers never reach the upstream', async (t) => {
  const spoofed: Array<[string, string]> = [
    ['X-Consumer-Id', 'admin'],
    ['X-Consumer-Name', 'root'],
    ['x-consumer-id', 'again'],
    ['X-CONSUMER-NAME', 'root2'],
    ['X_Consumer_Id', 'under'],
    ['X-Consumer-Username', 'root'],
    ['X-Credential-Identifier', 'x'],
    ['X-Anonymous-Consumer', 'false']
  ]
  for (const connection of ['keep-alive', 'close, X-Consumer-Id, X-Consumer-Name']) {
    const before = echo.requests.length
    const res = await send(gw, httpMessage('GET /api/echo/who HTTP/1.1', ['Host: g', `X-API-Key: ${c1.raw}`, ...spoofed, `Connection: ${connection}`]), { settleMs: 0 })
    const status = res.responses.find((x) => x.status >= 200)?.status
    // The underscore form is dropped, not refused: the request is served without any spoofed field.
    t.equal(status, 200, `Connection: ${connection}: served`)
    const rec = echo.requests[before]
    t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-id'), [c1.id], `Connection: ${connection}: exactly one X-Consumer-Id, the key's id`)
    t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-name'), ['c1'], `Connection: ${connection}: exactly one X-Consumer-Name, the key's name`)
    t.same(headerValues(rec?.rawHeaders ?? [], 'x_consumer_id'), [], `Connection: ${connection}: the underscore form is dropped`)
    t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-username'), [], `Connection: ${connection}: no other X-Consumer-* from the client`)
  }
  const before = echo.requests.length
  const anon = await send(gw, httpMessage('GET /api/echo/anon HTTP/1.1', ['Host: g', ...spoofed, 'Connection: close']), { settleMs: 0 })
  const status = anon.responses.find((x) => x.status >= 200)?.status
  t.equal(status, 200, 'anonymous: served')
  const rec = echo.requests[before]
  t.ok(rec !== undefined, 'anonymous: forwarded')
  t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-id'), [], 'anonymous: no X-Consumer-Id upstream')
  t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-name'), [], 'anonymous: no X-Consumer-Name upstream')
  t.same(headerValues(rec?.rawHeaders ?? [], 'x_consumer_id'), [], 'anonymous: the underscore form is dropped')
  t.same(headerValues(rec?.rawHeaders ?? [], 'x-consumer-username'), [], 'anonymous: no other X-Consumer-* from the client')
})

t.test('BI-19 hop-by-hop request headers are not forwarded and never cause a 500', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['all hop-by-hop headers', ['Connection: keep-alive, X-Foo', 'X-Foo: 1', 'Keep-Alive: timeout=5', 'Proxy-Connection: keep-alive',
      'Proxy: http://evil.example', 'Upgrade: foo', 'TE: trailers, deflate;q=0.5']],
    ['Keep-Alive alone', ['Keep-Alive: timeout=5']],
    ['Upgrade alone', ['Upgrade: foo']]
  ]
  for (const [label, headers] of cases) {
    const before = echo.requests.length
    const res = await send(gw, httpMessage('GET /api/echo/hop HTTP/1.1', ['Host: g', ...headers]), { settleMs: 0 })
    const status = res.responses.find((x) => x.status >= 200)?.status ?? 0
    t.ok(status >= 200 && status < 300, `${label}: 2xx (got ${status})`)
    const rec = echo.requests[before]
    t.ok(rec !== undefined, `${label}: forwarded`)
    if (rec === undefined) continue
    for (const name of ['x-foo', 'keep-alive', 'proxy-connection', 'proxy', 'upgrade']) {
      t.same(headerValues(rec.rawHeaders, name), [], `${label}: ${name} is not forwarded`)
    }
    const te = headerValues(rec.rawHeaders, 'te')
    t.ok(te.length === 0 || (te.length === 1 && te[0].trim().toLowerCase() === 'trailers'), `${label}: TE is at most "trailers" (${te.join(', ')})`)
  }
})

t.test('BI-20 hop-by-hop response headers from the upstream do not reach the client', async (t) => {
  const res = await send(gw, 'GET /api/hop/x HTTP/1.1\r\nHost: g\r\n\r\n', { settleMs: 0 })
  const r = res.responses.find((x) => x.status >= 200)
  t.equal(r?.status, 200, 'served')
  const h = r?.headers ?? {}
  t.equal(h['x-end-to-end']?.[0], 'kept', 'end-to-end headers pass')
  for (const name of ['x-hop', 'upgrade', 'trailer', 'proxy-connection']) t.equal(h[name], undefined, `${name} is removed`)
  t.notOk((h['keep-alive'] ?? []).some((v) => v.includes('max=77')), 'the upstream Keep-Alive is removed')
  t.notOk((h.connection ?? []).some((v) => /x-hop/i.test(v)), 'Connection is the gateway\'s own')
})

t.test('BI-21 Expect: 100-continue is answered only for requests that will be served', async (t) => {
  // (a) no key on an auth-required service: final 401, no interim 100, body not forwarded, close.
  {
    const before = echo.requests.length
    const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
    t.teardown(() => conn.destroy())
    await conn.write('POST /api/secure/x HTTP/1.1\r\nHost: g\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n')
    await conn.waitForResponses(1, 3000)
    const r = conn.result()
    t.same(r.statuses, [401], '(a) final 401 and no 100 Continue')
    t.ok(r.responses.find((x) => x.status === 401)?.headers['www-authenticate'] !== undefined, '(a) the 401 carries WWW-Authenticate')
    t.ok(await conn.waitForClose(1000), '(a) connection closed since the body was not read')
    t.equal(echo.requests.length, before, '(a) nothing forwarded')
  }
  // (b) with a key: 100 Continue, then 2xx; the upstream never sees Expect.
  {
    const before = echo.requests.length
    const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
    t.teardown(() => conn.destroy())
    await conn.write(`POST /api/secure/x HTTP/1.1\r\nHost: g\r\nX-API-Key: ${c1.raw}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`)
    await conn.waitForData(3000)
    t.same(conn.result().statuses, [100], '(b) 100 Continue before the body')
    await conn.writeRaw('abcde')
    await conn.waitForResponses(1, 3000)
    t.same(conn.result().statuses, [100, 200], '(b) then 200')
    const rec = echo.requests[before]
    t.equal(rec?.body.toString(), 'abcde', '(b) the body arrived')
    t.same(headerValues(rec?.rawHeaders ?? [], 'expect'), [], '(b) the upstream does not receive Expect')
  }
  // (c) an unknown expectation: 417.
  {
    const res = await send(gw, 'POST /api/echo/x HTTP/1.1\r\nHost: g\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: foo\r\n\r\nabcde')
    t.equal(res.responses.find((x) => x.status >= 200)?.status, 417, '(c) Expect: foo → 417')
  }
  // (d) HTTP/1.0 with Expect: 100-continue: the expectation is ignored.
  {
    const before = echo.requests.length
    const res = await send(gw, 'POST /api/echo/x HTTP/1.0\r\nHost: g\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nabcde')
    t.notOk(res.statuses.includes(100), '(d) no interim 100 for HTTP/1.0')
    t.equal(res.responses.find((x) => x.status >= 200)?.status, 200, '(d) served')
    t.same(headerValues(echo.requests[before]?.rawHeaders ?? [], 'expect'), [], '(d) the upstream does not receive Expect')
  }
  await sleep(0)
})

t.test('BI-21 Expect: 100-continue with a declared length over the body limit gets 413 first, never a 100', async (t) => {
  const cases: Array<[string, string]> = [
    ['a proxied route (BODY_LIMIT_BYTES, 1 MiB)', `POST /api/echo/big HTTP/1.1\r\nHost: g\r\nContent-Type: application/octet-stream\r\nContent-Length: ${1024 * 1024 + 1}\r\nExpect: 100-continue\r\n\r\n`],
    ['a keyed request to an auth-required service', `PUT /api/secure/big HTTP/1.1\r\nHost: g\r\nX-API-Key: ${c1.raw}\r\nContent-Type: text/plain\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n`],
    ['the admin API (64 KiB)', `POST /admin/apikeys HTTP/1.1\r\nHost: g\r\nAuthorization: ${adminAuth()}\r\nContent-Type: application/json\r\nContent-Length: ${64 * 1024 + 1}\r\nExpect: 100-continue\r\n\r\n`]
  ]
  for (const [label, head] of cases) {
    const before = echo.requests.length
    const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
    t.teardown(() => conn.destroy())
    // Headers only: a client that waits for 100 Continue never sends the body unless invited.
    await conn.write(head)
    await conn.waitForResponses(1, 3000)
    const r = conn.result()
    t.same(r.statuses, [413], `${label}: the first and only response is 413, no 100 Continue before it`)
    t.ok(isEnvelope(r.responses[0]?.body.toString() ?? ''), `${label}: the JSON error envelope`)
    t.ok(await conn.waitForClose(1000), `${label}: the connection is closed, since the body was never read`)
    t.equal(echo.requests.length, before, `${label}: nothing forwarded`)
  }
  // At the limit the upload is still invited.
  const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
  t.teardown(() => conn.destroy())
  await conn.write(`POST /admin/apikeys HTTP/1.1\r\nHost: g\r\nAuthorization: ${adminAuth()}\r\nContent-Type: application/json\r\nContent-Length: 13\r\nExpect: 100-continue\r\n\r\n`)
  await conn.waitForData(3000)
  t.same(conn.result().statuses, [100], 'a body within the limit: 100 Continue')
  await conn.writeRaw('{"name":"ok"}')
  await conn.waitForResponses(1, 3000)
  t.same(conn.result().statuses, [100, 201], 'then the request is served')
})
