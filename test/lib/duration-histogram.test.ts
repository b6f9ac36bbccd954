import t from 'tap'
import promClient from '@platformatic/prom-client'
import { DurationHistogram } from '../../lib/duration-histogram.js'
import { openMetrics, type MetricFamily } from '../../lib/openmetrics.js'

const BUCKETS = [0.001, 0.005, 0.01, 0.1, 1]
const NAME = 'test_duration_seconds'
const HELP = 'A duration'

/** The same observations, into prom-client's Histogram and into ours, each in its own registry. */
function pair (exemplars: boolean): { theirs: promClient.Registry, ours: promClient.Registry, observe: (method: string, path: string, v: number, traceId?: string) => void, histogram: DurationHistogram } {
  const theirs = new promClient.Registry()
  const reference = new promClient.Histogram({ name: NAME, help: HELP, labelNames: ['method', 'path'], buckets: BUCKETS, enableExemplars: exemplars, registers: [] })
  theirs.registerMetric(reference)
  const ours = new promClient.Registry()
  const histogram = new DurationHistogram({ name: NAME, help: HELP, labelNames: ['method', 'path'], buckets: BUCKETS })
  ours.registerMetric(histogram as unknown as promClient.Metric)
  return {
    theirs,
    ours,
    histogram,
    observe (method, path, v, traceId) {
      const series = histogram.labels(method, path)
      if (exemplars && traceId !== undefined) {
        reference.observe({ labels: { method, path }, value: v, exemplarLabels: { trace_id: traceId } as never })
        series.observeWithExemplar(v, { trace_id: traceId })
      } else {
        if (exemplars) reference.observe({ labels: { method, path }, value: v })
        else reference.observe({ method, path }, v)
        series.observe(v)
      }
    }
  }
}

// Bounds themselves (le is inclusive), between them, below the first, above the last.
const VALUES = [0.0005, 0.001, 0.003, 0.005, 0.0051, 0.05, 0.1, 0.7, 1, 2.5, 30, -0.001, 0]

t.test('prints what prom-client\'s Histogram prints: Prometheus text and JSON', async (t) => {
  const { theirs, ours, observe } = pair(false)
  for (const v of VALUES) observe('GET', '/api', v)
  observe('POST', '/api', 0.02)
  observe('GET', '/health', 0.0002)
  t.equal(await ours.metrics(), await theirs.metrics())
  t.same(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON())
  t.equal(JSON.stringify(await ours.getMetricsAsJSON()), JSON.stringify(await theirs.getMetricsAsJSON()), 'the same JSON, key order included')
})

t.test('keeps each bucket\'s latest exemplar as prom-client does, shown in OpenMetrics', async (t) => {
  const { theirs, ours, observe } = pair(true)
  observe('GET', '/api', 0.003, 'a'.repeat(32))
  observe('GET', '/api', 0.004, 'b'.repeat(32))
  observe('GET', '/api', 0.2)
  observe('GET', '/api', 50, 'c'.repeat(32))
  const strip = (families: MetricFamily[]): string => openMetrics(families).replace(/ \d+(\.\d+)?$/gm, ' <ts>')
  const mine = await ours.getMetricsAsJSON() as unknown as MetricFamily[]
  const reference = await theirs.getMetricsAsJSON() as unknown as MetricFamily[]
  t.equal(strip(mine), strip(reference))
  const text = openMetrics(mine)
  t.match(text, /test_duration_seconds_bucket\{le="0.005",method="GET",path="\/api"\} 2 # \{trace_id="b{32}"\} 0.004 \d+/)
  t.match(text, /test_duration_seconds_bucket\{le="\+Inf",method="GET",path="\/api"\} 4 # \{trace_id="c{32}"\} 50 \d+/)
  t.notMatch(text, /le="0.1".*#/, 'a bucket without an exemplar shows none')
})

t.test('reset empties every series; an observer kept from before brings its series back', async (t) => {
  const { ours, histogram } = pair(false)
  const kept = histogram.labels('GET', '/api')
  kept.observe(0.5)
  histogram.labels('PUT', '/api').observe(0.5)
  histogram.reset()
  const json = async (): Promise<Array<{ value: number, metricName?: string }>> => (await ours.getMetricsAsJSON())[0].values as never
  t.equal((await json()).length, 0)
  kept.observe(0.002)
  const values = await json()
  t.same(values.find((v) => v.metricName === `${NAME}_count`), { value: 1, metricName: `${NAME}_count`, exemplar: undefined, labels: { method: 'GET', path: '/api' } })
  t.equal(values.length, BUCKETS.length + 3, 'only the series observed since')
})

t.test('ignores a value that is not a number, and refuses the wrong number of labels', async (t) => {
  const { ours, histogram } = pair(false)
  histogram.labels('GET', '/api').observe(Number.NaN)
  histogram.labels('GET', '/api').observe(Infinity)
  const values = (await ours.getMetricsAsJSON())[0].values as Array<{ value: number, metricName?: string }>
  t.equal(values.find((v) => v.metricName === `${NAME}_count`)?.value, 0)
  t.throws(() => histogram.labels('GET'), /expected 2 label values, got 1/)
})
