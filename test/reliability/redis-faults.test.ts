// Faults (docs/reliability.md), Redis: FT-09 (Redis absent at start), FT-10 (SIGKILL under load
// across three gateways), FT-11 (slow Redis: CLIENT PAUSE, SIGSTOP, +200 ms latency), FT-12
// (partition, symmetric and asymmetric), FT-16 (a subscription refused by ACL). Every redis-server
// here is the test's own, killed by PID.
import t from 'tap'
import { generateApiKey } from '../../lib/api-key-format.js'
import { probe, startGateway, type GatewayProcess } from '../support/gateway-process.js'
import { FaultProxy } from '../support/fault-proxy.js'
import { admin, createKey, http, metricValue, nextIp, scrape, type CreatedKey } from '../support/http.js'
import { paced, type Hit } from '../support/load.js'
import { redisEnv } from '../support/redis-env.js'
import { rawCommand, startRedis } from '../support/redis-server.js'
import { logsAtLeast, service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'
import { freePort, sleep, until } from '../support/basics.js'

t.setTimeout(10 * 60_000)
const C = 20
const R = 10
const PARTITION_MS = Number(process.env.FT12_PARTITION_SECONDS ?? 30) * 1000

const echo = await echoUpstream(t)
const services = [
  service('echo', '/api/echo', echo.url),
  service('slowbucket', '/api/slowbucket', echo.url, { rateLimit: { rpm: 6, burst: 50 } })
]

async function ready (gw: GatewayProcess): Promise<number> {
  return await probe(gw.port, '/ready', 1500)
}

t.test('FT-09 Redis absent at start: the gateway serves anonymous traffic, refuses unverifiable keys, and recovers', async (t) => {
  const port = await freePort()
  const gw = await startGateway(t, { services, env: redisEnv(`redis://127.0.0.1:${port}`) })
  t.equal(await probe(gw.port, '/health'), 200, '/health 200 without Redis')
  const r = await http(gw.port, '/ready')
  t.equal(r.status, 503, '/ready 503 while Redis is down')
  t.match(r.body, /down/, '/ready says the store is down')

  const logStart = gw.logs.length
  const ip = nextIp()
  const anon: number[] = []
  const headersSeen: string[] = []
  for (let i = 0; i < 10; i++) {
    const res = await http(gw.port, '/api/echo/x', { localAddress: ip })
    anon.push(res.status)
    if (res.headers.ratelimit !== undefined || res.headers['x-ratelimit-limit'] !== undefined) headersSeen.push(String(res.headers.ratelimit))
  }
  t.same([...new Set(anon)], [200], 'anonymous requests are served (rate limiting fails open)')
  t.same(headersSeen, [], 'no RateLimit fields while failing open')
  const m = await scrape(gw.port)
  t.ok(metricValue(m, 'gateway_store_errors_total') > 0, 'gateway_store_errors_total rises')
  t.ok(metricValue(m, 'gateway_rate_limit_fail_open_total') > 0, 'gateway_rate_limit_fail_open_total rises')

  for (let i = 0; i < 3; i++) {
    const res = await http(gw.port, '/api/echo/keyed', { localAddress: nextIp(), headers: { 'x-api-key': generateApiKey().raw } })
    t.equal(res.status, 503, 'a key that cannot be verified: 503 (fails closed)')
    t.ok(Number(res.headers['retry-after']) >= 1, 'with Retry-After')
  }
  await gw.logsSettled()
  const warns = logsAtLeast(gw, 40, logStart).filter((l) => /rate-limit store/.test(String(l.msg)))
  t.ok(warns.length <= 1, `at most one rate-limit store WARN per 10 s (${warns.length})`)

  const redis = await startRedis({ port })
  t.teardown(() => redis.stop())
  const upAt = Date.now()
  t.ok(await until(async () => await ready(gw) === 200, 5000, 100), `/ready 200 within 5 s of Redis starting (${Date.now() - upAt} ms)`)
  const key = await createKey(gw.port, { name: 'ft09' }, nextIp())
  const ok = await http(gw.port, '/api/echo/keyed', { localAddress: nextIp(), headers: { 'x-api-key': key.raw } })
  t.equal(ok.status, 200, 'keys work once Redis is back, without a restart')
  const limited = await until(async () => (await http(gw.port, '/api/echo/keyed', { localAddress: nextIp(), headers: { 'x-api-key': key.raw } })).headers.ratelimit !== undefined, 5000 - (Date.now() - upAt), 100)
  t.ok(limited, `RateLimit fields are back within 5 s of Redis starting (${Date.now() - upAt} ms)`)
})

t.test('FT-10 SIGKILL of Redis under load across three gateways: no crash, no 500, limits back after restart', async (t) => {
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const env = redisEnv(redis.url)
  const gws = await Promise.all([0, 1, 2].map(async () => await startGateway(t, { services, env })))
  const keys: CreatedKey[] = []
  for (let i = 0; i < 20; i++) keys.push(await createKey(gws[0].port, { name: `ft10-${i}` }, nextIp()))

  const started = performance.now()
  let killedAt = 0
  let restartedAt = 0
  let readyAfterMs = -1
  const chaos = (async () => {
    await sleep(4000)
    await redis.kill('SIGKILL')
    killedAt = performance.now()
    await sleep(5000)
    await redis.restart()
    restartedAt = performance.now()
    if (await until(async () => (await Promise.all(gws.map(ready))).every((s) => s === 200), 5000, 100)) readyAfterMs = performance.now() - restartedAt
  })()
  const load = await paced({
    ports: gws.map((g) => g.port),
    ratePerSec: 200,
    durationMs: 16000,
    timeoutMs: 5000,
    request: (i) => i % 2 === 0
      ? { path: `/api/echo/k/${i}`, headers: { 'x-api-key': keys[(i / 2) % 20].raw }, tag: 'keyed' }
      : { path: `/api/echo/a/${i}`, tag: 'anon' }
  })
  await chaos
  const hits = load.hits
  t.comment(`sent ${load.sent}, skipped ${load.skipped}, resent after a keep-alive race ${hits.filter((h) => h.resent).length}, statuses ${JSON.stringify(countBy(hits, (h) => `${h.tag}:${h.status || h.error}`))}`)
  t.ok(gws.every((g) => g.running), 'no gateway crashed')
  t.same(hits.filter((h) => h.status === 0).map((h) => h.error), [], 'every request was answered')
  // The harness resends a request reset on a reused keep-alive connection (the idle-close race);
  // a gateway that reset connections itself would show up here as many resends.
  const resent = hits.filter((h) => h.resent).length
  t.ok(resent <= 10, `at most a few keep-alive races (${resent} resent of ${hits.length})`)
  t.equal(hits.filter((h) => h.status >= 500 && h.status !== 503).length, 0, 'no 500/502/504')
  t.ok(hits.filter((h) => h.tag === 'anon').every((h) => h.status === 200 || h.status === 429), 'anonymous: 200 or 429 throughout')
  t.ok(hits.filter((h) => h.tag === 'keyed').every((h) => h.status === 200 || h.status === 503 || h.status === 429), 'keyed: 200, 429 or 503 (fail closed), never anything else')
  const slowest = Math.max(...hits.map((h) => h.end - h.start))
  t.ok(slowest < 1500, `no request waited much longer than the store timeout (slowest ${slowest.toFixed(0)} ms)`)
  const timeline: Record<number, Record<string, number>> = {}
  for (const h of hits) {
    const sec = Math.floor((h.start - started) / 1000)
    timeline[sec] ??= {}
    timeline[sec][`${h.tag}:${h.status}`] = (timeline[sec][`${h.tag}:${h.status}`] ?? 0) + 1
  }
  t.comment(`kill at ${((killedAt - started) / 1000).toFixed(1)} s, restart at ${((restartedAt - started) / 1000).toFixed(1)} s; per second: ${JSON.stringify(timeline)}`)
  const outage = hits.filter((h) => h.start > killedAt + 500 && h.start < restartedAt)
  t.ok(outage.some((h) => h.tag === 'anon' && h.status === 200), 'anonymous traffic was served during the outage (fail open, per-instance buckets)')
  t.ok(readyAfterMs >= 0, `all three ready within 5 s of the restart (${readyAfterMs.toFixed(0)} ms)`)
  await sleep(1200) // the rate limiter re-probes the store once a second
  const ip = nextIp()
  const burst: number[] = []
  const t0 = Date.now()
  for (let i = 0; i < 45; i++) burst.push((await http(gws[i % 3].port, '/api/echo/after', { localAddress: ip })).status)
  const admitted = burst.filter((s) => s === 200).length
  const bound = C + R * (Date.now() - t0) / 1000 + 1
  t.ok(admitted <= bound, `limits enforced again across instances: ${admitted} admitted ≤ ${bound.toFixed(1)}`)
  const listed = (await admin(gws[1].port, 'GET', '/admin/apikeys', undefined, nextIp())).json().data as Array<{ id: string }>
  t.ok(keys.every((k) => listed.some((l) => l.id === k.id)), 'keys created before the kill still exist (appendfsync always)')
  const works = await http(gws[2].port, '/api/echo/k', { localAddress: nextIp(), headers: { 'x-api-key': keys[7].raw } })
  t.equal(works.status, 200, 'and still authenticate')
})

t.test('FT-11 a slow Redis never holds a request past the store timeout, and queued takes are not replayed', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const proxy = await new FaultProxy(redis.port).listen(t)
  const gw = await startGateway(t, { services, env: redisEnv(proxy.url) })
  const key = await createKey(gw.port, { name: 'ft11' }, nextIp())

  const during = async (label: string, ms: number): Promise<void> => {
    const ip = nextIp()
    const statuses: number[] = []
    const times: number[] = []
    const end = Date.now() + ms
    while (Date.now() < end) {
      const a = await http(gw.port, '/api/echo/x', { localAddress: ip })
      const k = await http(gw.port, '/api/echo/k', { localAddress: ip, headers: { 'x-api-key': key.raw } })
      statuses.push(a.status, k.status)
      times.push(a.ms, k.ms)
      await sleep(100)
    }
    t.ok(statuses.every((s) => [200, 429, 503].includes(s)), `${label}: only 200/429/503 (${[...new Set(statuses)].join(',')})`)
    t.ok(Math.max(...times) < 1000, `${label}: every request answered well within 1 s (slowest ${Math.max(...times).toFixed(0)} ms)`)
    t.ok(statuses.filter((_, i) => i % 2 === 0).every((s) => s === 200), `${label}: anonymous traffic keeps flowing`)
  }

  // Stale takes: a client that sent many requests during a pause must not find its bucket drained after.
  const staleCheck = async (label: string, pause: () => Promise<void> | void, resume: () => Promise<void> | void): Promise<void> => {
    const ip = nextIp()
    const first = await http(gw.port, '/api/slowbucket/x', { localAddress: ip })
    const r0 = Number(first.headers['x-ratelimit-remaining'])
    await pause()
    const pauseStarted = Date.now()
    let sent = 0
    while (Date.now() - pauseStarted < 3000) {
      await http(gw.port, '/api/slowbucket/x', { localAddress: ip })
      sent++
      await sleep(50)
    }
    await resume()
    t.ok(await until(async () => await ready(gw) === 200, 5000, 100), `${label}: ready again`)
    await sleep(1200)
    const after = await http(gw.port, '/api/slowbucket/x', { localAddress: ip })
    const r1 = Number(after.headers['x-ratelimit-remaining'])
    t.ok(r1 >= r0 - 6, `${label}: ${sent} requests during the pause cost the shared bucket at most a few probes (remaining ${r0} → ${r1})`)
  }

  const paused = during('CLIENT PAUSE', 3000)
  await rawCommand(redis.port, 'CLIENT PAUSE 3000 ALL')
  await paused
  await sleep(500)
  await staleCheck('CLIENT PAUSE replay', async () => { await rawCommand(redis.port, 'CLIENT PAUSE 3000 ALL') }, async () => { await sleep(200) })

  redis.pause()
  await during('SIGSTOP', 3000)
  redis.resume()
  await sleep(500)
  await staleCheck('SIGSTOP replay', () => redis.pause(), () => redis.resume())

  proxy.setLatency(200)
  await during('+200 ms latency', 3000)
  proxy.heal()
  t.ok(await until(async () => await ready(gw) === 200, 5000, 100), 'ready after the latency is gone')
  const lag = metricValue(await scrape(gw.port), 'nodejs_eventloop_lag_p99_seconds')
  t.ok(lag < 0.1, `event-loop lag p99 stays low (${(lag * 1000).toFixed(1)} ms)`)
})

t.test('FT-12 a partition from Redis is survived and healed; dropped replies never double-count', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const proxy = await new FaultProxy(redis.port).listen(t)
  const gw = await startGateway(t, { services, env: redisEnv(proxy.url) })
  const warm = await createKey(gw.port, { name: 'ft12-warm' }, nextIp())
  const cold = await createKey(gw.port, { name: 'ft12-cold' }, nextIp())
  t.equal((await http(gw.port, '/api/echo/w', { localAddress: nextIp(), headers: { 'x-api-key': warm.raw } })).status, 200, 'the warm key is verified before the partition')

  proxy.blackhole()
  const cut = Date.now()
  const ip = nextIp()
  const seen: Hit[] = []
  let readyDownAt = 0
  while (Date.now() - cut < PARTITION_MS) {
    const t0 = performance.now()
    const a = await http(gw.port, '/api/echo/p', { localAddress: ip })
    const w = await http(gw.port, '/api/echo/pw', { localAddress: nextIp(), headers: { 'x-api-key': warm.raw } })
    const c = await http(gw.port, '/api/echo/pc', { localAddress: nextIp(), headers: { 'x-api-key': cold.raw } })
    for (const [res, tag] of [[a, 'anon'], [w, 'warm'], [c, 'cold']] as const) seen.push({ status: res.status, headers: res.headers, start: t0, end: t0 + res.ms, port: gw.port, tag })
    if (readyDownAt === 0 && await ready(gw) === 503) readyDownAt = Date.now()
    await sleep(200)
  }
  t.comment(`during the partition: ${JSON.stringify(countBy(seen, (h) => `${h.tag}:${h.status}`))}`)
  t.ok(readyDownAt > 0 && readyDownAt - cut < 10000, `the dead connection is noticed: /ready 503 after ${readyDownAt - cut} ms`)
  t.ok(seen.filter((h) => h.tag === 'anon').every((h) => h.status === 200 || h.status === 429), 'anonymous: 200/429 throughout')
  t.ok(seen.filter((h) => h.tag === 'cold').every((h) => h.status === 503), 'a key never verified here: 503 throughout (fails closed)')
  t.ok(seen.filter((h) => h.tag === 'warm').every((h) => h.status === 200 || h.status === 503), 'a recently verified key: 200 for a few seconds, then 503')
  t.ok(seen.filter((h) => h.tag === 'warm').at(-1)?.status === 503, 'the warm key is not honoured for the whole partition')
  t.ok(Math.max(...seen.map((h) => h.end - h.start)) < 1000, 'no request hung')

  proxy.heal()
  const healed = Date.now()
  t.ok(await until(async () => await ready(gw) === 200, 15000, 200), `ready again after the heal (${Date.now() - healed} ms)`)
  await sleep(1200)
  const fresh = await createKey(gw.port, { name: 'ft12-after' }, nextIp())
  const ok = await http(gw.port, '/api/echo/after', { localAddress: nextIp(), headers: { 'x-api-key': fresh.raw } })
  t.equal(ok.status, 200, 'new keys work after the heal')
  t.ok(ok.headers.ratelimit !== undefined, 'rate limiting is back on the shared store')
  t.equal((await http(gw.port, '/api/echo/after', { localAddress: nextIp(), headers: { 'x-api-key': cold.raw } })).status, 200, 'the cold key authenticates again')

  // Asymmetric: commands reach Redis, replies are dropped. A slow bucket (0.1 token/s) shows
  // every take that happened: at most one per request sent.
  const z = nextIp()
  const r0 = Number((await http(gw.port, '/api/slowbucket/x', { localAddress: z })).headers['x-ratelimit-remaining'])
  proxy.dropReplies()
  let sent = 0
  const asymStart = Date.now()
  while (Date.now() - asymStart < 10000) {
    const res = await http(gw.port, '/api/slowbucket/x', { localAddress: z })
    t.ok(res.status === 200 || res.status === 429, `asymmetric: ${res.status}`)
    sent++
    await sleep(250)
  }
  proxy.heal()
  t.ok(await until(async () => await ready(gw) === 200, 15000, 200), 'ready again after the asymmetric partition')
  await sleep(1200)
  const r1 = Number((await http(gw.port, '/api/slowbucket/x', { localAddress: z })).headers['x-ratelimit-remaining'])
  t.ok(r1 >= r0 - sent - 1, `each request decremented the bucket at most once (${sent} sent, remaining ${r0} → ${r1})`)
  t.ok(gw.running, 'the gateway is still running')
})

function countBy<T> (xs: T[], f: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of xs) out[f(x)] = (out[f(x)] ?? 0) + 1
  return out
}

t.test('FT-16 a subscription Redis refuses is logged, never ends the process, and is asked again until allowed', async (t) => {
  // The change channels (revocations, services, cache purges) are refused for real: the
  // gateways' ACL user loses its channels, which also makes Redis close the user's subscribed
  // connections. ioredis resubscribes by itself after that reconnect; before 6.1 it left the
  // refused SUBSCRIBE's rejection unhandled, and Node ends a process on one.
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const acl = async (rules: string): Promise<void> => {
    t.match(await rawCommand(redis.port, `ACL SETUSER gw ${rules}`, 2000), /^\+OK/, `ACL SETUSER gw ${rules}`)
  }
  const refusedLog = (gw: GatewayProcess) => async () => await gw.waitForLog((l) => l.event === 'redis_subscription_refused' && /NOPERM/.test(String(l.msg)), 10_000)
  const subscribed = async (): Promise<number> => {
    const text = await rawCommand(redis.port, 'CLIENT LIST', 2000) ?? ''
    return text.split('\n').filter((l) => /\bsub=3\b/.test(l)).length
  }
  await acl('on >ft16-secret ~* &* +@all')
  const env = redisEnv(`redis://gw:ft16-secret@127.0.0.1:${redis.port}`)
  const a = await startGateway(t, { services, env })
  const key = await createKey(a.port, { name: 'ft16' }, nextIp())
  const use = async (gw: GatewayProcess): Promise<number> => (await http(gw.port, '/api/echo/k', { localAddress: nextIp(), headers: { 'x-api-key': key.raw } })).status
  t.equal(await use(a), 200, 'served before')

  await acl('resetchannels')
  const refused = await refusedLog(a)()
  t.ok(refused !== null, `the refused resubscription is logged: ${String(refused?.msg)}`)
  // An instance started while the channels are refused says so too.
  const b = await startGateway(t, { services, env })
  t.ok(await refusedLog(b)() !== null, 'a refused first subscription is logged')
  await sleep(500)
  t.ok(a.running, 'the gateway is still running') || t.comment(a.output().slice(-1500))
  t.equal(await probe(a.port, '/health'), 200, '/health 200')
  t.equal(await use(a), 200, 'keys are still served')
  t.equal(await use(b), 200, 'keys are served by the instance that started meanwhile')

  // Allowed again: both subscribe within one retry period, and revocations reach them at once
  // again (well under the 5 s for which a verified key is cached).
  await acl('allchannels')
  t.ok(await until(async () => await subscribed() === 2, 12_000, 200), 'both subscribers hold the three channels again')
  t.ok(await a.waitForLog((l) => l.event === 'redis_subscription_restored', 1000) !== null, 'the restored subscription is logged')
  t.equal(await use(a), 200, 'A has the key verified and cached')
  t.equal((await admin(b.port, 'POST', `/admin/apikeys/${key.id}/revoke`)).status, 200, 'revoked through B')
  const started = performance.now()
  t.ok(await until(async () => await use(a) === 401, 2000, 20), `A refuses the revoked key after ${Math.round(performance.now() - started)} ms`)
  t.ok(a.running && b.running, 'both gateways still run')
  t.notOk([...a.logs, ...b.logs].some((l) => /unhandled|uncaught/i.test(String(l.msg))), 'no unhandled rejection logged')
})
