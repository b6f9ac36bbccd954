// Load and secrets (docs/reliability.md), abuse at volume: SC-07 (admin brute force across three
// instances), SC-08 (random API keys from one address), LD-09 (label and store cardinality), LD-10
// (connection flood).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { generateApiKey } from '../../lib/api-key-format.js'
import { ADMIN_PASSWORD, adminAuth } from '../support/gateway-process.js'
import { createKey, http, metricValue, nextIp, parseMetrics, scrape } from '../support/http.js'
import { hammer, percentile } from '../support/load.js'
import { RawConnection } from '../support/raw-client.js'
import { dbsize, threeGatewaysOnRedis } from '../support/redis-env.js'
import { secretForms } from '../support/suite.js'
import { sleep } from '../support/basics.js'

t.setTimeout(8 * 60_000)
const MiB = 1024 * 1024

const { redis, gws } = await threeGatewaysOnRedis(t)
const [g1] = gws
const rnd = () => 'rnd' + randomBytes(6).toString('hex')

t.test('SC-07 admin brute force is throttled per address across all instances', async (t) => {
  const ip = nextIp()
  const wrong = Array.from({ length: 30 }, (_, i) => `wrong-password-${i}-${rnd()}`)
  const statuses: number[] = []
  let firstThrottled: { headers: Record<string, unknown> } | null = null
  for (let i = 0; i < 30; i++) {
    const res = await http(gws[i % 3].port, '/admin/apikeys', { headers: { authorization: adminAuth('admin', wrong[i]) }, localAddress: ip })
    statuses.push(res.status)
    if (res.status === 429 && firstThrottled === null) firstThrottled = res
    await sleep(100)
  }
  t.same(statuses.slice(0, 10), Array(10).fill(401), 'the first 10 failures get 401')
  t.same(statuses.slice(10), Array(20).fill(429), 'more than 10 failures within a minute get 429, whichever instance answers')
  t.ok(Number(firstThrottled?.headers['retry-after']) >= 1, '429 carries Retry-After')
  for (const g of gws) {
    const right = await http(g.port, '/admin/apikeys', { headers: { authorization: adminAuth() }, localAddress: ip })
    t.equal(right.status, 429, `the right password from the same address is still 429 during the lockout (port ${g.port})`)
  }
  const other = await http(gws[1].port, '/admin/apikeys', { headers: { authorization: adminAuth() }, localAddress: nextIp() })
  t.equal(other.status, 200, 'another address is unaffected')
  await Promise.all(gws.map((g) => g.logsSettled()))
  const logs = gws.flatMap((g) => g.logs)
  const throttled = logs.filter((l) => l.event === 'admin_auth_throttled')
  t.ok(throttled.length > 0 && throttled.every((l) => l.ip === ip), `WARN event=admin_auth_throttled with the address (${throttled.length})`)
  t.ok(throttled.some((l) => l.user === 'admin'), 'and the user name')
  const text = gws.map((g) => g.output()).join('\n')
  t.same([...wrong, ADMIN_PASSWORD].filter((p) => secretForms(p).some((f) => text.includes(f))), [], 'no password, right or wrong, is ever logged')
})

t.test('SC-08 5,000 random well-formed keys from one address: throttled, never admitted, no store growth', async (t) => {
  const ip = nextIp()
  const before = await dbsize(redis.port)
  const hits = await hammer({
    ports: gws.map((g) => g.port),
    connections: 16,
    durationMs: 120_000,
    maxRequests: 5000,
    localAddress: ip,
    request: (i) => ({ path: `/api/echo/sc08/${i}`, headers: { 'x-api-key': generateApiKey().raw } })
  })
  const after = await dbsize(redis.port)
  const counts: Record<number, number> = {}
  for (const h of hits) counts[h.status] = (counts[h.status] ?? 0) + 1
  t.comment(`SC-08: ${JSON.stringify(counts)}; DBSIZE ${before} → ${after}`)
  t.equal(hits.length, 5000, 'all 5,000 attempts answered')
  t.equal(counts[200] ?? 0, 0, 'never 200')
  t.ok((counts[429] ?? 0) > 0, '429 after repeated failures from one address')
  t.ok(hits.every((h) => h.status === 401 || h.status === 429), 'only 401 or 429')
  t.ok(after - before <= 5, `no store growth per attempt (DBSIZE ${before} → ${after})`)
})

t.test('LD-09 random paths, keys and X-Forwarded-For values do not grow metrics series or Redis', async (t) => {
  const kinds = (i: number): { path: string, headers?: Record<string, string> } => {
    switch (i % 5) {
      case 0: return { path: `/${rnd()}/${rnd()}?${rnd()}=1` }
      case 1: return { path: `/api/echo/${rnd()}`, headers: { 'x-api-key': 'gw_' + rnd() } }
      case 2: return { path: `/api/echo/${rnd()}`, headers: { 'x-api-key': generateApiKey().raw } }
      case 3: return { path: `/admin/${rnd()}` }
      default: return { path: `/api/echo/${rnd()}`, headers: { 'x-forwarded-for': `203.0.${i % 256}.${(i >> 8) % 256}, ${rnd()}` } }
    }
  }
  // Warm-up: every kind once from several addresses, so every bounded label value exists.
  for (let i = 0; i < 50; i++) {
    const k = kinds(i)
    await http(g1.port, k.path, { headers: k.headers, localAddress: nextIp() })
  }
  await http(g1.port, '/metrics')
  const series0 = new Set(parseMetrics((await http(g1.port, '/metrics')).body).keys())
  const db0 = await dbsize(redis.port)
  const rss0 = metricValue(await scrape(g1.port), 'process_resident_memory_bytes')
  const total = Number(process.env.LD09_REQUESTS ?? 60000)
  const hits = await hammer({
    ports: [g1.port],
    connections: 16,
    durationMs: 150_000,
    maxRequests: total,
    request: (i) => kinds(i)
  })
  const text = (await http(g1.port, '/metrics')).body
  const series1 = new Set(parseMetrics(text).keys())
  const added = [...series1].filter((s) => !series0.has(s))
  const db1 = await dbsize(redis.port)
  const rss1 = metricValue(parseMetrics(text), 'process_resident_memory_bytes')
  t.comment(`LD-09: ${hits.length} requests; series ${series0.size} → ${series1.size}; DBSIZE ${db0} → ${db1}; RSS ${(rss0 / MiB).toFixed(0)} → ${(rss1 / MiB).toFixed(0)} MiB`)
  t.ok(hits.length >= Math.min(total, 50000), `at least 50,000 requests sent (${hits.length})`)
  t.notOk(text.includes('rnd'), 'no random path, query, key or address in any label')
  t.ok(added.length <= 20, `only a bounded number of new series (status classes) appeared: ${added.length} ${added.slice(0, 5).join(' ')}`)
  t.ok(db1 - db0 <= 10, `Redis keys only for real principals (DBSIZE ${db0} → ${db1})`)
  t.ok(rss1 - rss0 < 150 * MiB, `RSS bounded (+${((rss1 - rss0) / MiB).toFixed(0)} MiB)`)
})

t.test('LD-10 a connection flood is shed while a control client is still served', async (t) => {
  const key = await createKey(g1.port, { name: 'ld10', rate_limit: 600000, burst: 10000 }, nextIp())
  const rss0 = metricValue(await scrape(g1.port), 'process_resident_memory_bytes')
  const idle: RawConnection[] = []
  const refusedOrFailed: string[] = []
  for (let i = 0; i < 2000; i++) {
    try {
      idle.push(await RawConnection.open(g1.port, { localAddress: `127.0.${2 + (i >> 8)}.${(i & 255) || 1}` }))
    } catch (e) {
      refusedOrFailed.push((e as NodeJS.ErrnoException).code ?? String(e))
    }
  }
  t.teardown(() => { for (const c of idle) c.destroy() })
  t.comment(`${idle.length} idle connections open, ${refusedOrFailed.length} refused`)

  // 500 keep-alive clients, each asking every 2 s on its own connection, and a control client, for 10 s.
  const stop = Date.now() + 10_000
  const kaConns = await Promise.all(Array.from({ length: 500 }, async () => await RawConnection.open(g1.port)))
  t.teardown(() => { for (const c of kaConns) c.destroy() })
  const kaServed = { asked: 0, answered: 0 }
  const kaLoops = kaConns.map(async (c, i) => {
    await sleep((i * 4) % 2000)
    let n = 0
    while (Date.now() < stop && !c.closed) {
      await c.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n')
      kaServed.asked++
      n++
      await c.waitForResponses(n, 5000)
      kaServed.answered = kaServed.answered + (c.finals().length >= n ? 1 : 0)
      await sleep(2000)
    }
  })
  const control: number[] = []
  while (Date.now() < stop) {
    const r = await http(g1.port, '/api/echo/control', { headers: { 'x-api-key': key.raw }, localAddress: nextIp(), timeoutMs: 10000 })
    control.push(r.status === 200 ? r.ms : Infinity)
    await sleep(100)
  }
  await Promise.all(kaLoops)
  const p99 = percentile(control, 99)
  t.comment(`keep-alive clients: ${kaServed.answered}/${kaServed.asked} answered; control p99 ${p99.toFixed(1)} ms`)
  t.ok(control.every((ms) => Number.isFinite(ms)), 'every control request was served')
  t.ok(p99 < 500, `control p99 within budget (${p99.toFixed(1)} ms < 500 ms)`)
  t.equal(kaServed.answered, kaServed.asked, 'keep-alive clients are served')
  const stillOpen = idle.filter((c) => !c.closed).length
  t.equal(stillOpen, 0, `idle connections that never sent a byte are closed by the headers timeout (${stillOpen} still open)`)
  const rss1 = metricValue(await scrape(g1.port), 'process_resident_memory_bytes')
  t.ok(rss1 - rss0 < 150 * MiB, `memory bounded (+${((rss1 - rss0) / MiB).toFixed(0)} MiB)`)
})
