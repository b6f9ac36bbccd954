// Secrets (docs/reliability.md): SC-01…SC-06 and SC-12 against one gateway child (embedded store,
// LOG_LEVEL=debug), its captured output, its SQLite files and its /metrics.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { generateApiKey } from '../../lib/api-key-format.js'
import { adminAuth, startGateway } from '../support/gateway-process.js'
import { admin, createKey, http, nextIp, type HttpResponse } from '../support/http.js'
import { isEnvelope, secretForms, service } from '../support/suite.js'
import { echoUpstream, headerValues, refusedPort } from '../support/upstreams.js'
import { sleep } from '../support/basics.js'

const echo = await echoUpstream(t)
const refused = await refusedPort()
const gw = await startGateway(t, {
  services: [service('echo', '/api/echo', echo.url), service('down', '/api/down', refused.url)],
  env: { LOG_LEVEL: 'debug' }
})
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

/** Every response the gateway itself made (errors and admin answers), for SC-01's scan. */
const gatewayBodies: string[] = []
async function call (path: string, opts: Parameters<typeof http>[2] = {}): Promise<HttpResponse> {
  const res = await http(gw.port, path, { localAddress: nextIp(), ...opts })
  if (res.status >= 400 || path.startsWith('/admin') || path === '/metrics') gatewayBodies.push(res.body + JSON.stringify(res.headers))
  return res
}

const canary = await createKey(gw.port, { name: 'canary' }, nextIp())
const revoked = await createKey(gw.port, { name: 'revoked' }, nextIp())
await admin(gw.port, 'POST', `/admin/apikeys/${revoked.id}/revoke`, undefined, nextIp())

t.test('SC-01 a key used everywhere never appears in logs, metrics or gateway responses', async (t) => {
  const fake = 'gw_CANARY' + 'Q'.repeat(40)
  const k = canary.raw
  await call('/api/echo/h', { headers: { 'x-api-key': k } })
  await call('/api/echo/b', { headers: { authorization: `Bearer ${k}` } })
  await call(`/api/echo/q?apikey=${encodeURIComponent(k)}&x=1`, { headers: { 'x-api-key': k } })
  await call('/api/echo/body', { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': k }, body: JSON.stringify({ key: k }) })
  await call('/api/down/x', { headers: { 'x-api-key': k } })
  await call('/api/echo/fake', { headers: { 'x-api-key': fake } })
  await call('/api/echo/revoked', { headers: { 'x-api-key': revoked.raw } })
  await call('/api/echo/revoked-bearer', { headers: { authorization: `Bearer ${revoked.raw}` } })
  await call('/admin/apikeys', { headers: { authorization: adminAuth('admin', k) } })
  await call('/admin/apikeys', { headers: { authorization: `Bearer ${k}`, cookie: `session=${k}` } })
  await call('/admin/apikeys', { headers: { authorization: adminAuth() } })
  await call('/metrics')
  await gw.logsSettled()
  const haystacks: Array<[string, string]> = [['logs', gw.output()], ['gateway responses', gatewayBodies.join('\n')]]
  for (const secret of [k, revoked.raw, fake]) {
    const forms = [...secretForms(secret), secret.slice(3)]
    for (const [where, text] of haystacks) {
      const found = forms.filter((f) => text.includes(f))
      t.same(found, [], `${secret === fake ? 'malformed canary' : secret === k ? 'canary key' : 'revoked key'}: absent from ${where}`)
    }
  }
  t.ok(gw.logs.length > 10, 'logs were captured')
})

t.test('SC-02 the raw key is returned once, with Cache-Control: no-store, and never again', async (t) => {
  const created = await createKey(gw.port, { name: 'sc02' }, nextIp())
  t.equal(created.response.headers['cache-control'], 'no-store', '201 carries Cache-Control: no-store')
  t.match(created.raw, /^gw_/, 'the raw key is in the 201 body')
  const later = [
    await call('/admin/apikeys', { headers: { authorization: adminAuth() } }),
    await call(`/admin/apikeys/${created.id}`, { headers: { authorization: adminAuth() } }),
    await call('/admin/apikeys', { method: 'POST', headers: { authorization: adminAuth(), 'content-type': 'application/json' }, body: '{"name":"sc02","bogus":1}' }),
    await call('/admin/apikeys', { method: 'POST', headers: { authorization: adminAuth(), 'content-type': 'application/json' }, body: '{"name":' }),
    await call(`/admin/apikeys/${created.id}/revoke`, { method: 'POST', headers: { authorization: adminAuth() } }),
    await call(`/admin/apikeys/${created.id}`, { headers: { authorization: adminAuth() } }),
    await call('/admin/apikeys/unknown-id/revoke', { method: 'POST', headers: { authorization: adminAuth() } }),
    await call(`/admin/apikeys/${created.id}`, { method: 'DELETE', headers: { authorization: adminAuth() } })
  ]
  for (const res of later) {
    t.notOk(secretForms(created.raw).some((f) => res.body.includes(f)), `${res.status}: the raw key is not in the body`)
  }
  t.ok(later.every((r) => r.headers['cache-control'] === 'no-store'), 'every admin answer carries Cache-Control: no-store')
})

t.test('SC-03 list and detail show only the record fields, never the digest', async (t) => {
  // The record's own fields and no more: no hash, no raw key, no piece of either.
  const fields = ['active', 'burst', 'created_at', 'expires_at', 'id', 'last_used_at', 'name', 'quota', 'rate_limit', 'services']
  const list = (await call('/admin/apikeys', { headers: { authorization: adminAuth() } })).json().data as Array<Record<string, unknown>>
  const one = (await call(`/admin/apikeys/${canary.id}`, { headers: { authorization: adminAuth() } })).json().data as Record<string, unknown>
  t.ok(list.some((rec) => rec.id === canary.id), 'the list holds the canary')
  const digest = sha256(canary.raw)
  for (const rec of [...list, one]) {
    t.same(Object.keys(rec).sort(), fields, `record ${String(rec.name)}: exactly the record fields`)
    for (const [k, v] of Object.entries(rec)) {
      if (typeof v !== 'string') continue
      t.notOk(v.includes(digest) || (digest.includes(v.toLowerCase()) && v.length >= 8), `${k}: not the digest`)
      t.notMatch(v, /[0-9a-fA-F]{32,}|[A-Za-z0-9+/_-]{40,}/, `${k}: no 32+ char hex or base64 blob (${v.slice(0, 40)})`)
      if (rec.id === canary.id) t.notOk(v.length >= 8 && canary.raw.includes(v), `${k}: no 8+ char piece of the raw key`)
    }
  }
})

t.test('SC-04 the store holds only a digest; the digest itself is not a key', async (t) => {
  const dir = join(gw.cwd, 'data')
  const files: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d)) {
      const p = join(d, e)
      if (statSync(p).isDirectory()) walk(p)
      else files.push(p)
    }
  }
  walk(dir)
  t.ok(files.length > 0, `the embedded store wrote files (${files.map((f) => f.slice(dir.length)).join(', ')})`)
  const forms = [...secretForms(canary.raw), canary.raw.slice(3)]
  for (const f of files) {
    const bytes = readFileSync(f)
    const found = forms.filter((x) => bytes.includes(Buffer.from(x)))
    t.same(found, [], `${f.slice(dir.length)}: the raw key is absent`)
  }
  const digest = sha256(canary.raw)
  for (const value of [digest, 'gw_' + digest, Buffer.from(digest, 'hex').toString('base64url')]) {
    const res = await call('/api/echo/digest', { headers: { 'x-api-key': value } })
    t.equal(res.status, 401, `the stored digest sent as a key (${value.slice(0, 10)}…) is refused`)
  }
})

t.test('SC-05 the gateway key never reaches the upstream; everything else arrives intact and in order', async (t) => {
  for (const [label, headers] of [
    ['X-API-Key', { 'x-api-key': canary.raw }],
    ['Bearer', { authorization: `Bearer ${canary.raw}` }]
  ] as Array<[string, Record<string, string>]>) {
    const before = echo.requests.length
    const res = await call('/api/echo/x?b=2&a=1&c=%20x&b=3', { headers: { 'x-first': '1', ...headers, 'x-second': '2' } })
    t.equal(res.status, 200, `${label}: served`)
    const rec = echo.requests[before]
    t.equal(rec?.url, '/api/echo/x?b=2&a=1&c=%20x&b=3', `${label}: query string intact and in order`)
    const names = (rec?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
    t.ok(names.indexOf('x-first') >= 0 && names.indexOf('x-first') < names.indexOf('x-second'), `${label}: other headers intact and in order`)
    const raw = JSON.stringify(rec?.rawHeaders ?? [])
    t.notOk(secretForms(canary.raw).some((f) => raw.includes(f)), `${label}: the key is not forwarded`)
  }
  const before = echo.requests.length
  await call('/api/echo/own-token', { headers: { authorization: 'Bearer backend-token-123' } })
  t.same(headerValues(echo.requests[before]?.rawHeaders ?? [], 'authorization'), ['Bearer backend-token-123'], 'a non-gateway Bearer token passes untouched')
})

t.test('SC-06 unknown, revoked, expired and malformed keys get identical 401 bodies', async (t) => {
  const expiring = await createKey(gw.port, { name: 'expiring', expires_at: new Date(Date.now() + 1500).toISOString() }, nextIp())
  t.equal((await call('/api/echo/exp', { headers: { 'x-api-key': expiring.raw } })).status, 200, 'the expiring key works before it expires')
  await sleep(1700)
  const k = canary.raw
  const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1)
  const cases: Array<[string, string]> = [
    ['unknown well-formed', generateApiKey().raw],
    ['shares 0 leading chars', 'gw_' + [...k.slice(3)].reverse().join('')],
    ['shares 24 leading chars', k.slice(0, 24) + generateApiKey().raw.slice(24)],
    ['bad checksum', flip(k, k.length - 1)],
    ['revoked', revoked.raw],
    ['expired', expiring.raw],
    ['malformed', 'gw_short'],
    ['not gateway-shaped', 'hello']
  ]
  const bodies = new Map<string, string>()
  for (const [label, key] of cases) {
    const res = await call('/api/echo/sc06', { headers: { 'x-api-key': key } })
    t.equal(res.status, 401, `${label}: 401`)
    t.ok(isEnvelope(res.body), `${label}: error envelope`)
    const { request_id: _ignored, ...rest } = JSON.parse(res.body)
    bodies.set(label, JSON.stringify(rest))
  }
  t.equal(new Set(bodies.values()).size, 1, `one body for every class (${[...new Set(bodies.values())].join(' | ')})`)
})

t.test('SC-12 admin needs admin credentials; metric labels hold no keys or raw URLs', async (t) => {
  t.equal((await call('/admin/apikeys', { headers: { 'x-api-key': canary.raw } })).status, 401, '/admin/apikeys with an API key: 401')
  t.equal((await call('/admin/circuit-breakers', { headers: { authorization: `Bearer ${canary.raw}` } })).status, 401, '/admin/circuit-breakers with a Bearer key: 401')
  t.equal((await call('/ready')).status, 200, '/ready is served')
  const marks = Array.from({ length: 5 }, (_, i) => `zq${i}${Math.random().toString(36).slice(2, 10)}`)
  for (const m of marks) {
    await call(`/api/echo/${m}?q=${m}`, { headers: { 'x-api-key': canary.raw } })
    await call(`/nowhere/${m}`)
    await call(`/admin/${m}`)
  }
  const metrics = (await call('/metrics')).body
  t.ok(metrics.includes('gateway_http_requests_total'), 'metrics were scraped')
  t.same(marks.filter((m) => metrics.includes(m)), [], 'no raw URL path or query in any label')
  t.notOk(secretForms(canary.raw).some((f) => metrics.includes(f)), 'no key in any label')
  t.notOk(metrics.includes(canary.id), 'no key id in any label')
})
