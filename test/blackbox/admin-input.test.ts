// Bad input (docs/reliability.md), admin API input: BI-11, BI-12, BI-13 (bodies), BI-23, BI-24
// (Basic auth). Each case uses its own client address, so the failed-login throttle (docs/admin-api.md#authentication-and-errors: more
// than 10 failures per IP per minute) never interferes.
import t from 'tap'
import { ADMIN_PASSWORD, ADMIN_USER, adminAuth, startGateway } from '../support/gateway-process.js'
import { admin, createKey, http, nextIp } from '../support/http.js'
import { httpMessage, RawConnection } from '../support/raw-client.js'
import { isEnvelope, leaks, send, service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'

const echo = await echoUpstream(t)
const gw = await startGateway(t, { services: [service('echo', '/api/echo', echo.url)] })
const CHALLENGE = 'Basic realm="gateway", charset="UTF-8"'

async function keyCount (): Promise<number> {
  const res = await admin(gw.port, 'GET', '/admin/apikeys', undefined, nextIp())
  return res.json().data.length
}

function post (contentType: string | null, body: string | Buffer, extra: string[] = []): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  const headers = ['Host: g', `Authorization: ${adminAuth()}`, `Content-Length: ${b.length}`, ...extra]
  if (contentType !== null) headers.push(`Content-Type: ${contentType}`)
  return httpMessage('POST /admin/apikeys HTTP/1.1', headers, b)
}

t.test('BI-11 malformed admin JSON is refused with 400/413/415, never 500, and stores nothing', async (t) => {
  const before = await keyCount()
  const deep = '['.repeat(100000) + ']'.repeat(100000)
  const cases: Array<[string, Buffer, number[]]> = [
    ['truncated JSON', post('application/json', '{"name":'), [400]],
    ['empty JSON body', post('application/json', ''), [400]],
    ['text/plain', post('text/plain', '{"name":"plain"}'), [400, 415]],
    ['application/json<TAB>x', post('application/json\tx', '{"name":"tab"}'), [400, 415]],
    ['leading space in the type', Buffer.from(`POST /admin/apikeys HTTP/1.1\r\nHost: g\r\nAuthorization: ${adminAuth()}\r\nContent-Type:  application/json\r\nContent-Length: 17\r\n\r\n{"name":"spaced"}`), [201, 400, 415]],
    ['application/json garbage', post('application/json garbage', '{"name":"garbage"}'), [400, 415]],
    ['JSON nested 100,000 deep', post('application/json', deep), [400, 413]],
    ['1 MiB of whitespace', post('application/json', ' '.repeat(1024 * 1024)), [413]]
  ]
  let created = 0
  for (const [label, bytes, allowed] of cases) {
    const res = await send(gw, bytes, { settleMs: 0 })
    const r = res.responses.find((x) => x.status >= 200)
    t.ok(r !== undefined && allowed.includes(r.status), `${label}: status ${r?.status} is one of ${allowed.join('/')}`)
    if (r?.status === 201) created++
    const body = r?.body.toString('utf8') ?? ''
    if (r !== undefined && r.status >= 400) {
      t.ok(isEnvelope(body), `${label}: error envelope`)
      t.same(leaks(body), [], `${label}: no stack, path or dependency text in the body`)
    }
  }
  t.equal(await keyCount(), before + created, 'no key was stored by a refused body')
})

t.test('BI-12 prototype poisoning and mass assignment are refused without coercion', async (t) => {
  const before = await keyCount()
  const cases: Array<[string, string]> = [
    ['__proto__', '{"name":"p1","__proto__":{"isAdmin":true}}'],
    ['constructor.prototype', '{"name":"p2","constructor":{"prototype":{"isAdmin":true}}}'],
    ['number as name', '{"name":123}']
  ]
  for (const [label, body] of cases) {
    const res = await send(gw, post('application/json', body), { settleMs: 0 })
    t.equal(res.responses.find((x) => x.status >= 200)?.status, 400, `${label}: 400`)
  }
  const mass = await send(gw, post('application/json', JSON.stringify({ name: 'k1', isAdmin: true, id: 'fixed', hash: '00'.repeat(32), createdAt: 0 })), { settleMs: 0 })
  const r = mass.responses.find((x) => x.status >= 200)
  t.ok(r?.status === 400 || r?.status === 201, `extra fields: 400 (preferred) or dropped (got ${r?.status})`)
  if (r?.status === 201) {
    const rec = JSON.parse(r.body.toString('utf8')).data.api_key
    t.not(rec.id, 'fixed', 'the id is made by the server')
    t.notOk('isAdmin' in rec || 'hash' in rec || 'createdAt' in rec, 'no extra field is stored')
  }
  const list = (await admin(gw.port, 'GET', '/admin/apikeys', undefined, nextIp())).json().data as Array<Record<string, unknown>>
  t.equal(list.length, before + (r?.status === 201 ? 1 : 0), 'nothing else was stored')
  t.notOk(list.some((k) => 'isAdmin' in k || k.id === 'fixed'), 'no stored record carries client-chosen fields')
})

t.test('BI-13 key names outside the allowed pattern are refused naming the field', async (t) => {
  const logStart = gw.lines.length
  const refused = ['a'.repeat(10000), 'k\u202eey', 'a\u0000b', '../x', 'a\r\nb', '\u{1F600}', '\u0430dmin']
  for (const name of refused) {
    const res = await admin(gw.port, 'POST', '/admin/apikeys', { name }, nextIp())
    const label = JSON.stringify(name.length > 20 ? name.slice(0, 10) + '…' : name)
    // Names are printable ASCII only (BI-13), so lookalikes and RTL overrides are refused outright.
    t.equal(res.status, 400, `${label}: 400`)
    t.match(res.body, /name/, `${label}: the message names the field`)
    t.ok(isEnvelope(res.body), `${label}: error envelope`)
  }
  const huge = await admin(gw.port, 'POST', '/admin/apikeys', { name: 'n'.repeat(1024 * 1024) }, nextIp())
  t.equal(huge.status, 413, '1 MiB name: 413')

  const lower = await admin(gw.port, 'POST', '/admin/apikeys', { name: 'admin' }, nextIp())
  t.equal(lower.status, 201, '"admin" is a valid name')
  const cyr = await admin(gw.port, 'POST', '/admin/apikeys', { name: '\u0430dmin' }, nextIp())
  t.equal(cyr.status, 400, 'a Cyrillic lookalike of "admin" is refused, so it can never pose as that key')
  await gw.logsSettled()
  const stdout = gw.lines.slice(logStart).filter((l) => l.stream === 'stdout')
  t.ok(stdout.every((l) => { try { JSON.parse(l.text); return true } catch { return false } }), 'every log line is one JSON object (no raw control characters split lines)')
})

t.test('BI-23 every malformed or wrong admin credential gets 401 with the Basic challenge', async (t) => {
  const k = await createKey(gw.port, { name: 'bi23' }, nextIp())
  const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64')
  const forms: Array<[string, string[]]> = [
    ['no Authorization', []],
    ['Basic without a token', ['Authorization: Basic']],
    ['invalid base64', ['Authorization: Basic !!!not-base64!!!']],
    ['empty user and password (Og==)', ['Authorization: Basic Og==']],
    ['user containing a colon', [`Authorization: Basic ${b64(`${ADMIN_USER}:x:${ADMIN_PASSWORD}`)}`]],
    ['8 KiB password', [`Authorization: Basic ${b64(`${ADMIN_USER}:${'p'.repeat(8192)}`)}`]],
    ['Latin-1 bytes', [`Authorization: Basic ${b64(Buffer.from(`${ADMIN_USER}:p\u00e4ssw\u00f6rd`, 'latin1'))}`]],
    ['two Authorization headers', [`Authorization: ${adminAuth()}`, `Authorization: Basic ${b64('admin:wrong')}`]],
    ['Bearer with an API key', [`Authorization: Bearer ${k.raw}`]],
    ['an API key as X-API-Key', [`X-API-Key: ${k.raw}`]]
  ]
  for (const [label, headers] of forms) {
    const res = await send(gw, httpMessage('GET /admin/apikeys HTTP/1.1', ['Host: g', ...headers]), { settleMs: 0 })
    const r = res.responses.find((x) => x.status >= 200)
    t.equal(r?.status, 401, `${label}: 401`)
    t.equal(r?.headers['www-authenticate']?.[0], CHALLENGE, `${label}: WWW-Authenticate carries the Basic challenge`)
    t.ok(isEnvelope(r?.body.toString('utf8') ?? ''), `${label}: error envelope`)
  }
  const ok = await http(gw.port, '/admin/apikeys', { headers: { authorization: adminAuth() }, localAddress: nextIp() })
  t.equal(ok.status, 200, 'the right credentials are accepted')
})

t.test('BI-24 admin auth takes the same time whichever part of the credentials is wrong', async (t) => {
  const wrongFirst = String.fromCharCode(ADMIN_PASSWORD.charCodeAt(0) ^ 1) + ADMIN_PASSWORD.slice(1)
  const wrongLast = ADMIN_PASSWORD.slice(0, -1) + String.fromCharCode(ADMIN_PASSWORD.charCodeAt(ADMIN_PASSWORD.length - 1) ^ 1)
  const classes: Record<string, string> = {
    'wrong first char': adminAuth(ADMIN_USER, wrongFirst),
    'wrong last char': adminAuth(ADMIN_USER, wrongLast),
    'other length': adminAuth(ADMIN_USER, ADMIN_PASSWORD + 'xyz'),
    'unknown user': adminAuth('nobody-' + ADMIN_USER, ADMIN_PASSWORD)
  }
  const names = Object.keys(classes)
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]))
  // 200 per class; 8 failures per client address (under the throttle of 10), classes interleaved.
  for (let round = 0; round < 100; round++) {
    const conn = await RawConnection.open(gw.port, { localAddress: nextIp() })
    try {
      for (let j = 0; j < 8; j++) {
        const name = names[(round + j) % 4]
        const started = performance.now()
        await conn.write(`GET /admin/apikeys HTTP/1.1\r\nHost: g\r\nAuthorization: ${classes[name]}\r\n\r\n`)
        const got = await conn.waitForResponses(j + 1, 5000)
        const elapsed = performance.now() - started
        const last = got.filter((r) => r.status >= 200).at(-1)
        if (last?.status !== 401) { t.fail(`expected 401 for ${name}, got ${last?.status}`); return }
        samples[name].push(elapsed)
      }
    } finally {
      conn.destroy()
    }
  }
  const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return (s[99] + s[100]) / 2 }
  const medians = Object.fromEntries(names.map((n) => [n, median(samples[n])]))
  t.comment(`medians (ms): ${JSON.stringify(medians)}`)
  const spread = Math.max(...Object.values(medians)) - Math.min(...Object.values(medians))
  // Only millisecond-scale differences are visible on a shared 2-core box
  // (docs/reliability.md, How the cases run).
  t.ok(spread < 1, `class medians within 1 ms of each other (spread ${spread.toFixed(3)} ms)`)
})
