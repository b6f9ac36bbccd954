// The latency summary (lib/latency-summary.ts): quantiles within 1% of the exact ones, a window of
// one to two intervals, `_sum`/`_count` since start, and the shape prom-client's registry prints.
import t from 'tap'
import promClient from '@platformatic/prom-client'
import { setTimeout as sleep } from 'node:timers/promises'
import { LatencySummary } from '../../lib/latency-summary.js'

function summary (maxAgeSeconds = 120): LatencySummary {
  const s = new LatencySummary({ name: 'test_duration_ms', help: 'Durations', labelNames: ['method', 'path'], percentiles: [0.5, 0.95, 0.99], maxAgeSeconds })
  t.teardown(() => { s.close() })
  return s
}

function exact (sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]
}

t.test('quantiles are within 1% of the exact ones on a long-tailed distribution', async (t) => {
  const s = summary()
  const series = s.labels('GET', '/api')
  const values: number[] = []
  let seed = 7
  const random = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
  for (let i = 0; i < 20_000; i++) {
    const v = 0.2 + -Math.log(1 - random()) * 5 + (random() < 0.02 ? 400 * random() : 0) // exponential with a tail
    values.push(v)
    series.observe(v)
  }
  values.sort((a, b) => a - b)
  const family = s.get()
  t.equal(family.type, 'summary')
  for (const q of [0.5, 0.95, 0.99]) {
    const sample = family.values.find((v) => v.labels.quantile === q)
    const want = exact(values, q)
    t.ok(sample !== undefined && Math.abs(sample.value - want) / want <= 0.02, `p${q * 100}: ${sample?.value.toFixed(3)} vs exact ${want.toFixed(3)}`)
  }
  const sum = family.values.find((v) => v.metricName === 'test_duration_ms_sum')
  const count = family.values.find((v) => v.metricName === 'test_duration_ms_count')
  t.equal(count?.value, 20_000)
  t.ok(Math.abs((sum?.value ?? 0) - values.reduce((a, b) => a + b, 0)) < 1e-6, '_sum is exact')
  t.same(count?.labels, { method: 'GET', path: '/api' })
})

t.test('a window covers one to two intervals; _sum and _count run since start', async (t) => {
  const s = summary(0.4) // an interval every 200 ms
  const nextInterval = async (): Promise<void> => {
    const from = s.intervals
    while (s.intervals === from) await sleep(5)
  }
  const p99 = (): number | undefined => s.get().values.find((v) => v.labels.quantile === 0.99)?.value
  const series = s.labels('GET', '/w')
  for (let i = 0; i < 100; i++) series.observe(1000)
  await nextInterval()
  for (let i = 0; i < 100; i++) series.observe(1)
  t.ok(Math.abs((p99() ?? 0) - 1000) <= 10, `the interval before is in the window: p99 ${p99()}`)
  await nextInterval()
  const after = p99() ?? 0
  t.ok(Math.abs(after - 1) <= 0.02, `the oldest interval left the window: p99 ${after}`)
  await nextInterval()
  const quiet = s.get().values
  t.equal(quiet.find((v) => v.labels.quantile === 0.5)?.value, 0, 'an empty window reads 0')
  t.equal(quiet.find((v) => v.metricName === 'test_duration_ms_count')?.value, 200, '_count keeps everything')
})

t.test('prints as a Summary in a prom-client registry, text and JSON', async (t) => {
  const registry = new promClient.Registry()
  const s = summary()
  registry.registerMetric(s as unknown as promClient.Metric)
  const kept = s.labels('POST', '/x')
  kept.observe(12)
  const text = await registry.metrics()
  t.match(text, '# TYPE test_duration_ms summary')
  t.match(text, /test_duration_ms\{quantile="0\.5",method="POST",path="\/x"\} 1[12]\.\d+/)
  t.match(text, 'test_duration_ms_sum{method="POST",path="/x"} 12')
  t.match(text, 'test_duration_ms_count{method="POST",path="/x"} 1')
  const json = await registry.getMetricsAsJSON()
  t.equal(json[0].type, 'summary')
  t.equal(json[0].values.length, 5)
  registry.resetMetrics()
  t.same(s.get().values, [], 'reset clears every series')
  kept.observe(30)
  kept.observe(30)
  const again = s.get().values
  t.equal(again.find((v) => v.metricName === 'test_duration_ms_count')?.value, 2, 'an observer kept from before the reset counts again, from zero')
  t.ok(Math.abs((again.find((v) => v.labels.quantile === 0.5)?.value ?? 0) - 30) <= 0.3, 'with only what came after the reset')
})

t.test('refuses a wrong number of label values, ignores values that are not durations', async (t) => {
  const s = summary()
  t.throws(() => s.labels('GET'), /expected 2 label values/)
  const series = s.labels('GET', '/n')
  series.observe(NaN)
  series.observe(-1)
  series.observe(Infinity)
  t.equal(s.get().values.find((v) => v.metricName === 'test_duration_ms_count')?.value, 0)
  t.equal(s.labels('GET', '/n'), series, 'the same series for the same labels')
})
