// The OpenMetrics writer (docs/tracing.md#exemplars): families, counter naming, escaping, exemplars, EOF.
import t from 'tap'
import { openMetrics } from '../../lib/openmetrics.js'

t.test('a counter family drops _total, its sample keeps it; label values and help are escaped', async (t) => {
  const text = openMetrics([{ name: 'jobs_total', help: 'Jobs "done"\nback\\slash', type: 'counter', values: [{ labels: { path: 'a"b\\c\nd' }, value: 3 }] }])
  t.equal(text, '# TYPE jobs counter\n# HELP jobs Jobs \\"done\\"\\nback\\\\slash\njobs_total{path="a\\"b\\\\c\\nd"} 3\n# EOF\n')
})

t.test('a histogram with an exemplar on one bucket; +Inf and NaN are spelled as OpenMetrics wants', async (t) => {
  const text = openMetrics([
    {
      name: 'latency_seconds',
      help: 'h',
      type: 'histogram',
      values: [
        { labels: { le: 0.1, method: 'GET' }, value: 1, metricName: 'latency_seconds_bucket', exemplar: { labelSet: { trace_id: 'abc' }, value: 0.05, timestamp: 1700000000.5 } },
        { labels: { le: '+Inf', method: 'GET' }, value: 1, metricName: 'latency_seconds_bucket', exemplar: null },
        { labels: { method: 'GET' }, value: 0.05, metricName: 'latency_seconds_sum' },
        { labels: { method: 'GET' }, value: 1, metricName: 'latency_seconds_count' }
      ]
    },
    { name: 'temperature', help: 'g', type: 'gauge', values: [{ labels: {}, value: NaN }, { labels: { side: 'top' }, value: Infinity }] }
  ])
  t.equal(text, [
    '# TYPE latency_seconds histogram',
    '# HELP latency_seconds h',
    'latency_seconds_bucket{le="0.1",method="GET"} 1 # {trace_id="abc"} 0.05 1700000000.5',
    'latency_seconds_bucket{le="+Inf",method="GET"} 1',
    'latency_seconds_sum{method="GET"} 0.05',
    'latency_seconds_count{method="GET"} 1',
    '# TYPE temperature gauge',
    '# HELP temperature g',
    'temperature NaN',
    'temperature{side="top"} +Inf',
    '# EOF',
    ''
  ].join('\n'))
})
