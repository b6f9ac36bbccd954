// Bad input (docs/reliability.md), request framing: BI-01…BI-07 and BI-09, raw bytes on a socket
// against one gateway child. "Rejected" = exactly one status line, the expected status, connection
// closed within 1 s, and the echo upstream received nothing.
import { execFileSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { NODE_BIN, startGateway } from '../support/gateway-process.js'
import { http, nextIp } from '../support/http.js'
import { httpMessage, RawConnection } from '../support/raw-client.js'
import { assertRejectedAndClosed, send, service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'

const echo = await echoUpstream(t)
// No case here is about timeouts (test/blackbox/server-limits.test.ts and the exchange tests are): BI-09's
// 1 MiB of 1-byte chunks must race neither the harness's 5 s REQUEST_TIMEOUT_MS nor its 500 ms
// upstream attempt timeout on a busy machine.
const gw = await startGateway(t, { services: [service('echo', '/api/echo', echo.url)], env: { REQUEST_TIMEOUT_MS: '120000', UPSTREAM_TIMEOUT_MS: '60000' } })

const SMUGGLED = 'GET /admin/apikeys HTTP/1.1\r\nHost: g\r\n\r\n'

async function rejected (tt: Test, bytes: string | Buffer, allowed: number[], label: string): Promise<void> {
  const before = echo.requests.length
  const res = await send(gw, bytes)
  assertRejectedAndClosed(tt, res, allowed, label)
  tt.equal(echo.requests.length, before, `${label}: not forwarded`)
}

t.test('BI-01 CL+TE smuggling attempts are rejected with one 400 and a close', async (t) => {
  const variants: Array<[string, string[]]> = [
    ['CL then TE', ['Content-Length: 5', 'Transfer-Encoding: chunked']],
    ['TE then CL', ['Transfer-Encoding: chunked', 'Content-Length: 5']],
    ['tab before the TE name', ['Content-Length: 5', '\ttransfer-encoding: chunked']],
    ['TE with trailing space', ['Content-Length: 5', 'Transfer-Encoding: chunked ']],
    ['TE identity,chunked', ['Content-Length: 5', 'Transfer-Encoding: identity,chunked']]
  ]
  const logStart = gw.lines.length
  for (const [label, headers] of variants) {
    await rejected(t, httpMessage('POST /api/echo HTTP/1.1', ['Host: g', ...headers], '0\r\n\r\n' + SMUGGLED), [400], label)
  }
  await gw.logsSettled()
  const logs = gw.lines.slice(logStart).map((l) => l.text).join('\n')
  t.notMatch(logs, /GET \/admin\/apikeys HTTP\/1\.1/, 'the raw bytes are never logged')
  t.match(logs, /HPE_[A-Z_]+/, 'a log line carries the parser error code')
})

t.test('BI-02 malformed or duplicate Content-Length is rejected', async (t) => {
  const variants: Array<[string, string[]]> = [
    ['3 and 5 on two lines', ['Content-Length: 3', 'Content-Length: 5']],
    ['5 twice', ['Content-Length: 5', 'Content-Length: 5']],
    ['5, 5', ['Content-Length: 5, 5']],
    ['-1', ['Content-Length: -1']],
    ['+5', ['Content-Length: +5']],
    ['1 2', ['Content-Length: 1 2']],
    ['0x5', ['Content-Length: 0x5']],
    ['20 digits', ['Content-Length: 12345678901234567890']]
  ]
  for (const [label, headers] of variants) {
    // A 20-digit length is well-formed but over any limit: 413 (RFC 9110 §15.5.14) is as good as 400.
    const allowed = label === '20 digits' ? [400, 413] : [400]
    await rejected(t, httpMessage('POST /api/echo HTTP/1.1', ['Host: g', ...headers], 'abcde'), allowed, label)
  }
})

t.test('BI-03 Transfer-Encoding variants are rejected and never forwarded', async (t) => {
  const chunked = '5\r\nabcde\r\n0\r\n\r\n'
  const variants: Array<[string, string, string[]]> = [
    ['chunked, identity', 'POST /api/echo HTTP/1.1', ['Transfer-Encoding: chunked, identity']],
    ['gzip', 'POST /api/echo HTTP/1.1', ['Transfer-Encoding: gzip']],
    ['two TE lines identity then chunked', 'POST /api/echo HTTP/1.1', ['Transfer-Encoding: identity', 'Transfer-Encoding: chunked']],
    [', chunked', 'POST /api/echo HTTP/1.1', ['Transfer-Encoding: , chunked']],
    ['HTTP/1.0 with TE chunked', 'POST /api/echo HTTP/1.0', ['Transfer-Encoding: chunked']]
  ]
  for (const [label, line, headers] of variants) {
    await rejected(t, httpMessage(line, ['Host: g', ...headers], chunked), [400, 501], label)
  }
})

t.test('BI-04 field-syntax errors are rejected with 400 and a close', async (t) => {
  const variants: Array<[string, string]> = [
    ['space before colon', 'POST /api/echo HTTP/1.1\r\nHost: g\r\nContent-Length : 5\r\n\r\nabcde'],
    ['leading space before the first header', 'POST /api/echo HTTP/1.1\r\n Content-Length: 5\r\nHost: g\r\n\r\nabcde'],
    ['bare CR inside a line', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nX-A: 1\rX-B: 2\r\n\r\n'],
    ['LF-only line ends', 'GET /api/echo HTTP/1.1\nHost: g\nX-A: 1\n\n'],
    ['headers ended by CRLF CR X', 'GET /api/echo HTTP/1.1\r\nHost: g\r\n\rX'],
    ['NUL in a value', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nX-A: a\x00b\r\n\r\n'],
    ['0x01 in a value', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nX-A: a\x01b\r\n\r\n'],
    ['a line without a colon', 'GET /api/echo HTTP/1.1\r\nHost: g\r\nfoo bar\r\n\r\n'],
    ['GE(T as method', 'GE(T /api/echo HTTP/1.1\r\nHost: g\r\n\r\n'],
    ['HTTP/1.01', 'GET /api/echo HTTP/1.01\r\nHost: g\r\n\r\n']
  ]
  for (const [label, bytes] of variants) await rejected(t, bytes, [400], label)

  const version = execFileSync(NODE_BIN, ['--version'], { encoding: 'utf8' }).trim()
  const major = Number(/^v(\d+)/.exec(version)?.[1])
  t.ok(major >= 22, `the gateway runs on a maintained Node with the parser fixes (${version})`)
  const insecure = Object.entries(gw.env).filter(([k, v]) => /insecure-http-parser/.test(v) || k === 'NODE_OPTIONS')
  t.same(insecure, [], 'no --insecure-http-parser in the gateway environment')
})

t.test('BI-05 an obs-folded header is rejected, not unfolded', async (t) => {
  await rejected(t, 'GET /api/echo HTTP/1.1\r\nHost: g\r\nX-Folded: a\r\n b\r\n\r\n', [400], 'obs-fold')
})

t.test('BI-06 oversize headers are rejected with 431 and a close', async (t) => {
  const logStart = gw.lines.length
  const big = 'Z'.repeat(20 * 1024)
  await rejected(t, `GET /api/echo HTTP/1.1\r\nHost: g\r\nX-Big: ${big}\r\n\r\n`, [431], '20 KiB header')
  await rejected(t, `GET /api/echo/${'u'.repeat(17 * 1024)} HTTP/1.1\r\nHost: g\r\n\r\n`, [431, 414], '17 KiB URL')
  await rejected(t, `GET /api/echo HTTP/1.1\r\nHost: g\r\nCookie: c=${'k'.repeat(60 * 1024)}\r\n\r\n`, [431], '60 KiB Cookie')
  await gw.logsSettled()
  const logs = gw.lines.slice(logStart).map((l) => l.text).join('\n')
  t.notMatch(logs, /Z{64}|u{64}|k{64}/, 'the oversize content is never logged')
})

t.test('BI-07 a header-count flood is rejected with 431 and nothing is forwarded', async (t) => {
  const junk = Array.from({ length: 2100 }, (_, i) => `a${i}:`)
  await rejected(t, httpMessage('POST /api/echo HTTP/1.1', ['Host: g', ...junk, 'Content-Length: 5'], 'abcde' + SMUGGLED), [431], '2,100 headers')
  // Just over the gateway's 100-field limit.
  const some = Array.from({ length: 101 }, (_, i) => `X-H${i}: v`)
  await rejected(t, httpMessage('GET /api/echo HTTP/1.1', ['Host: g', ...some]), [431], '101 headers')
})

t.test('BI-09 a chunk-extension flood is rejected; 1-byte chunks are only subject to the body limit', async (t) => {
  await rejected(t, 'POST /api/echo HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n1;' + 'a'.repeat(20000) + '\r\nx\r\n0\r\n\r\n', [400, 413], 'chunk extension of 20,000 bytes')

  // 1 MiB (exactly the body limit) as one-byte chunks: accepted (2xx) or rejected by the limit (413).
  const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
  t.teardown(() => conn.destroy())
  await conn.write('POST /api/echo HTTP/1.1\r\nHost: g\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
  const piece = Buffer.from('1\r\nx\r\n'.repeat(16 * 1024), 'latin1')
  for (let i = 0; i < 64 && !conn.closed; i++) await conn.writeRaw(piece)
  await conn.writeRaw('0\r\n\r\n')
  const [res] = (await conn.waitForResponses(1, 60000)).filter((r) => r.status >= 200)
  t.ok(res !== undefined && (res.status === 413 || (res.status >= 200 && res.status < 300)), `1-byte chunks: 2xx or 413 (got ${res?.status})`)
  if (res !== undefined && res.status < 300) {
    t.equal(echo.requests.at(-1)?.body.length, 1024 * 1024, 'the upstream received the whole 1 MiB')
  }
  const health = await http(gw.port, '/health')
  t.equal(health.status, 200, 'the gateway still answers afterwards')
})

t.test('a Host whose port is not 1-65535, or that is not host[:port], is 400 and never forwarded', async (t) => {
  for (const host of ['g:0', 'g:99999', 'g:65536', 'g:', 'g:abc', 'g:-1', 'g:+80', 'g:8 0', '[::1]:0', '[::1', '[zz::1]:80', 'evil.com/..', 'a:b:c']) {
    await rejected(t, httpMessage('GET /api/echo/h HTTP/1.1', [`Host: ${host}`]), [400], `Host: ${host}`)
  }
  for (const host of ['g', 'g:1', 'g:65535', 'gw.example.com:8081', '127.0.0.1:80', '[::1]:8080', '[::1]']) {
    const before = echo.requests.length
    const res = await send(gw, httpMessage('GET /api/echo/h HTTP/1.1', [`Host: ${host}`, 'Connection: close']))
    t.equal(res.statuses[0], 200, `Host: ${host} is served`)
    t.equal(echo.requests.length, before + 1, `Host: ${host} is forwarded`)
  }
})
