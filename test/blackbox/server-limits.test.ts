// Bad input (docs/reliability.md), body size and slow clients: BI-08 and BI-10, against one gateway
// child with the test configuration's client timeouts (headers 2 s, whole request 5 s, keep-alive
// idle 5 s).
import t from 'tap'
import { adminAuth, startGateway } from '../support/gateway-process.js'
import { http, nextIp } from '../support/http.js'
import { RawConnection } from '../support/raw-client.js'
import { service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'
import { sleep } from '../support/basics.js'

const MiB = 1024 * 1024
const echo = await echoUpstream(t)
const gw = await startGateway(t, {
  services: [service('echo', '/api/echo', echo.url)],
  env: { BODY_LIMIT_BYTES: String(MiB), HEADERS_TIMEOUT_MS: '2000', REQUEST_TIMEOUT_MS: '5000', KEEP_ALIVE_TIMEOUT_MS: '5000' }
})

async function open (): Promise<RawConnection> {
  const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
  t.teardown(() => conn.destroy())
  return conn
}

t.test('BI-08 (a) an admin body declared over 64 KiB is refused with 413 before it is read', async (t) => {
  const conn = await open()
  await conn.write(`POST /admin/apikeys HTTP/1.1\r\nHost: g\r\nAuthorization: ${adminAuth()}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n`)
  const [res] = await conn.waitForResponses(1, 3000)
  t.equal(res?.status, 413, 'answered 413 without the body being sent')
  t.ok(await conn.waitForClose(1000), 'connection closed')
})

t.test('BI-08 (b) a 5 MiB chunked upload to a 1 MiB route never reaches the upstream whole', async (t) => {
  const before = echo.requests.length
  const conn = await open()
  await conn.write('POST /api/echo HTTP/1.1\r\nHost: g\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n')
  const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x61), Buffer.from('\r\n')])
  let sent = 0
  for (let i = 0; i < 80 && !conn.closed; i++) {
    if (!await conn.writeRaw(chunk)) break
    sent += 0x10000
  }
  if (!conn.closed) await conn.writeRaw('0\r\n\r\n')
  await conn.waitForResponses(1, 8000)
  const statuses = conn.result().statuses
  t.notOk(statuses.some((s) => s >= 200 && s < 300), `no 2xx for an over-limit body (statuses [${statuses.join(', ')}], ${sent} bytes written)`)
  t.ok(statuses.includes(413) || await conn.waitForClose(2000), '413, or the client connection is closed')
  await sleep(300)
  const fresh = echo.requests.slice(before)
  t.notOk(fresh.some((r) => !r.aborted && r.body.length > MiB), 'the upstream never received a complete over-limit body')
})

t.test('BI-08 (c) a body of exactly 1 MiB is forwarded', async (t) => {
  const res = await http(gw.port, '/api/echo/exact', {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.alloc(MiB, 0x62),
    localAddress: nextIp()
  })
  t.equal(res.status, 200, '2xx at exactly the limit')
  t.equal(echo.requests.at(-1)?.body.length, MiB, 'the upstream received all of it')
})

t.test('BI-10 slow and idle clients are cut off on time while others are served', async (t) => {
  // (a) one header byte per second: 408 or close at the 2 s headers timeout (allowed up to 8 s).
  const slowHeaders = async (): Promise<void> => {
    const conn = await open()
    await conn.write('GET /api/echo HTTP/1.1\r\nHost: g\r\nX-Slow: ')
    const started = Date.now()
    for (let i = 0; i < 8 && !conn.closed; i++) {
      await conn.writeRaw('a')
      await conn.waitForClose(1000)
    }
    const r = conn.result()
    t.ok(conn.closed, `(a) slow headers: connection closed (after ${Date.now() - started} ms)`)
    t.ok(r.statuses.every((s) => s === 408), `(a) slow headers: nothing but 408 was answered ([${r.statuses.join(', ')}])`)
  }
  // (b) full headers, then one body byte per second of a declared 1 KB: 408 at 5 s (allowed up to 12 s).
  const slowBody = async (): Promise<void> => {
    const conn = await open()
    await conn.write('POST /api/echo HTTP/1.1\r\nHost: g\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n')
    const started = Date.now()
    for (let i = 0; i < 12 && !conn.closed; i++) {
      await conn.writeRaw('b')
      await conn.waitForClose(1000)
    }
    const r = conn.result()
    t.ok(conn.closed, `(b) slow body: connection closed (after ${Date.now() - started} ms)`)
    t.same(r.statuses, [408], '(b) slow body: answered 408')
  }
  // (c) 500 idle keep-alive sockets: closed at the 5 s keep-alive timeout (allowed up to 12 s).
  const idle = async (): Promise<void> => {
    const conns: RawConnection[] = []
    for (let i = 0; i < 500; i++) conns.push(await RawConnection.open(gw.port))
    t.teardown(() => { for (const c of conns) c.destroy() })
    await Promise.all(conns.map(async (c) => { await c.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n'); await c.waitForResponses(1, 5000) }))
    const answered = conns.filter((c) => c.finals().some((r) => r.status === 200)).length
    t.equal(answered, 500, '(c) every keep-alive client was served once')
    const deadline = Date.now() + 12000
    while (Date.now() < deadline && conns.some((c) => !c.closed)) await sleep(250)
    t.equal(conns.filter((c) => !c.closed).length, 0, '(c) every idle keep-alive socket was closed by the gateway')
  }
  // Meanwhile an ordinary client is served.
  const others = async (): Promise<void> => {
    await sleep(1500)
    const res = await http(gw.port, '/api/echo/other', { localAddress: nextIp() })
    t.equal(res.status, 200, 'another client is served while slow ones hang on')
  }
  await Promise.all([slowHeaders(), slowBody(), idle(), others()])
})
