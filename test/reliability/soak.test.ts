// Load (docs/reliability.md), LD-08 soak: 150 req/s of mixed traffic for SOAK_SECONDS (default 600)
// against one gateway on Redis. After the warm-up, RSS and heapUsed must not trend up, the heap
// after a forced GC must be back near its post-warm-up level, handles back to baseline, Redis and
// the metric series bounded. GC is forced through the inspector (the gateway runs with --inspect on
// a loopback port), so the product needs no test hook; every sample follows a forced GC.
import t from 'tap'
import { generateApiKey } from '../../lib/api-key-format.js'
import { startGateway } from '../support/gateway-process.js'
import { createKey, http, metricValue, nextIp, parseMetrics, type CreatedKey } from '../support/http.js'
import { paced, slope, type Hit, type RequestSpec } from '../support/load.js'
import { dbsize, redisEnv } from '../support/redis-env.js'
import { startRedis } from '../support/redis-server.js'
import { service } from '../support/suite.js'
import { echoUpstream, recordingUpstream, slowUpstream } from '../support/upstreams.js'
import { freePort, sleep } from '../support/basics.js'

const SOAK_S = Number(process.env.SOAK_SECONDS ?? 600)
const WARMUP_S = Math.min(120, Math.round(SOAK_S / 5))
const RATE = 150
const MiB = 1024 * 1024
t.setTimeout((SOAK_S + 240) * 1000)

const echo = await echoUpstream(t)
const bad = await recordingUpstream(t, (_req, res) => { res.writeHead(500); res.end('boom') })
const slow = await slowUpstream(t, 300)
const redis = await startRedis()
t.teardown(() => redis.stop())
const inspectPort = await freePort()
const gw = await startGateway(t, {
  services: [service('echo', '/api/echo', echo.url), service('bad', '/api/bad', bad.url), service('slow', '/api/slow', slow.url)],
  env: { ...redisEnv(redis.url), LOG_LEVEL: 'warn' },
  nodeArgs: [`--inspect=127.0.0.1:${inspectPort}`]
})

/** HeapProfiler.collectGarbage through the inspector's WebSocket. */
async function forceGc (): Promise<void> {
  const targets = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json() as Array<{ webSocketDebuggerUrl: string }>
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl)
  await new Promise<void>((resolve, reject) => { ws.onopen = () => resolve(); ws.onerror = () => reject(new Error('inspector connect failed')) })
  await new Promise<void>((resolve) => {
    ws.onmessage = (ev) => { if (JSON.parse(String(ev.data)).id === 1) resolve() }
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }))
  })
  ws.close()
}

interface Sample { atMin: number, rss: number, heap: number, handles: number, series: number, dbsize: number }
async function sample (startedAt: number): Promise<Sample> {
  const m = parseMetrics((await http(gw.port, '/metrics', { localAddress: '127.0.0.1' })).body)
  return {
    atMin: (Date.now() - startedAt) / 60000,
    rss: metricValue(m, 'process_resident_memory_bytes'),
    heap: metricValue(m, 'nodejs_heap_size_used_bytes'),
    handles: metricValue(m, 'nodejs_active_handles_total'),
    series: m.size,
    dbsize: await dbsize(redis.port)
  }
}

t.test(`LD-08 soak for ${SOAK_S} s at ${RATE} req/s: memory, handles, Redis and series stay flat`, async (t) => {
  const keys: CreatedKey[] = []
  for (let i = 0; i < 10; i++) keys.push(await createKey(gw.port, { name: `soak-${i}`, rate_limit: 600000, burst: 100000 }, nextIp()))
  const tight = await createKey(gw.port, { name: 'soak-tight', rate_limit: 6, burst: 1 }, nextIp())
  await sleep(6000)
  await forceGc()
  const baseline = await sample(Date.now())

  const startedAt = Date.now()
  const samples: Sample[] = []
  let gcAfterWarmup: Sample | null = null
  const sampler = (async () => {
    while (Date.now() - startedAt < SOAK_S * 1000) {
      await sleep(10_000)
      // Each sample follows a forced GC, so heapUsed is the live heap, not the GC sawtooth.
      await forceGc()
      const s = await sample(startedAt)
      if (gcAfterWarmup === null && Date.now() - startedAt >= WARMUP_S * 1000) gcAfterWarmup = s
      samples.push(s)
    }
  })()
  const statuses: Record<string, number> = {}
  const load = await paced({
    ports: [gw.port],
    ratePerSec: RATE,
    durationMs: SOAK_S * 1000,
    timeoutMs: 10_000,
    maxInFlight: 500,
    request: (i): RequestSpec => {
      const r = i % 20
      if (r < 12) return { path: `/api/echo/v/${i % 50}`, headers: { 'x-api-key': keys[i % 10].raw }, tag: 'valid' }
      if (r < 15) return { path: '/api/echo/b', headers: { 'x-api-key': generateApiKey().raw }, tag: 'badkey' }
      if (r < 17) return { path: '/api/echo/t', headers: { 'x-api-key': tight.raw }, tag: 'limited' }
      if (r === 17) return { path: '/api/bad/x', headers: { 'x-api-key': keys[0].raw }, tag: '5xx' }
      if (r === 18) return { path: '/api/slow/x', headers: { 'x-api-key': keys[1].raw }, tag: 'slow' }
      return { path: '/api/echo/abort', method: 'POST', headers: { 'x-api-key': keys[2].raw, 'content-type': 'text/plain', 'content-length': '1000' }, abortAfterMs: 50, tag: 'abort' }
    },
    onResponse: (h: Hit) => { const k = `${h.tag}:${h.status || h.error}`; statuses[k] = (statuses[k] ?? 0) + 1 }
  })
  await sampler

  await sleep(7000) // keep-alive (5 s) and request timeouts expire
  await forceGc()
  const end = await sample(startedAt)
  const steady = samples.filter((s) => s.atMin * 60 >= WARMUP_S)
  const rssSlope = slope(steady.map((s) => s.atMin), steady.map((s) => s.rss / MiB))
  const heapSlope = slope(steady.map((s) => s.atMin), steady.map((s) => s.heap / MiB))
  const warm = gcAfterWarmup as Sample | null
  t.comment(`sent ${load.sent}, skipped ${load.skipped}; ${JSON.stringify(statuses)}`)
  t.comment(`baseline ${JSON.stringify(baseline)}; after warm-up GC ${JSON.stringify(warm)}; end ${JSON.stringify(end)}`)
  t.comment(`samples (min, RSS MiB, heap MiB): ${steady.map((s) => `${s.atMin.toFixed(1)}:${(s.rss / MiB).toFixed(1)}/${(s.heap / MiB).toFixed(1)}`).join(' ')}`)
  t.ok(gw.running, 'the gateway is still running')
  t.ok(load.skipped === 0, `the load ran at its rate (${load.skipped} skipped)`)
  t.ok(steady.length >= 3, `enough samples after the warm-up (${steady.length})`)
  t.ok(rssSlope < 0.5, `RSS slope ${rssSlope.toFixed(3)} MiB/min < 0.5`)
  t.ok(heapSlope < 0.5, `heapUsed slope ${heapSlope.toFixed(3)} MiB/min < 0.5`)
  t.ok(warm !== null && end.heap <= warm.heap * 1.1, `heap after forced GC ${(end.heap / MiB).toFixed(1)} MiB within 10% of the post-warm-up ${((warm?.heap ?? 0) / MiB).toFixed(1)} MiB`)
  t.ok(end.handles <= baseline.handles + 5, `active handles back to baseline (${baseline.handles} → ${end.handles})`)
  t.ok(Math.max(...samples.map((s) => s.dbsize)) <= 100, `Redis DBSIZE bounded (max ${Math.max(...samples.map((s) => s.dbsize))})`)
  t.ok(warm !== null && end.series <= warm.series + 5, `metric series constant (${warm?.series} → ${end.series})`)
})
