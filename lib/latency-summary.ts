// The latency summary's store (gateway_http_request_duration_ms, docs/operations.md#metrics): p50,
// p95 and p99 over the last one to two minutes, per method and path. prom-client's Summary inserts
// every observation into a t-digest per age bucket (two inserts, about 2 µs and 700 bytes per
// request here); this one adds it to a DDSketch (@datadog/sketches-js: a log-bucketed count, ~30 ns,
// no allocation), and does the quantile work at scrape time. Quantiles are within 1% of the true
// value (DDSketch's relative-accuracy guarantee), where the t-digest gave a rank error instead.
//
// The window: each series keeps the sketch of the running interval and of the one before it;
// a scrape reads both merged, so a quantile covers between one and two intervals (maxAgeSeconds / 2
// each), as prom-client's two age buckets did. `_sum` and `_count` run since start, as before.
// The object is a prom-client metric (name, help, type, get, reset): registries, the text, JSON
// and OpenMetrics outputs read it as they read a Summary.
import { DDSketch } from '@datadog/sketches-js'
import { labelObject, seriesKey } from './metric-labels.js'

const RELATIVE_ACCURACY = 0.01

export interface LatencySummaryOptions {
  readonly name: string
  readonly help: string
  readonly labelNames: readonly string[]
  readonly percentiles: readonly number[]
  /** The window quantiles cover at most; a new interval starts every half of it. */
  readonly maxAgeSeconds: number
}

/** What `labels(...)` returns: the series' own observer, kept by the caller. */
export interface LatencySeries { observe (value: number): void }

interface Series {
  readonly key: string
  readonly labels: Record<string, string>
  /** In the summary's map (false after a reset, until its next observation). */
  listed: boolean
  /** The interval `current` belongs to (a count of rotations since start). */
  interval: number
  current: DDSketch
  previous: DDSketch | null
  count: number
  sum: number
  readonly observer: LatencySeries
}

interface Sample { labels: Record<string, string | number>, value: number, metricName?: string }

export class LatencySummary {
  readonly name: string
  readonly help: string
  readonly type = 'summary'
  readonly aggregator = 'sum'
  readonly #labelNames: readonly string[]
  readonly #percentiles: readonly number[]
  readonly #series = new Map<string, Series>()
  readonly #timer: NodeJS.Timeout
  #interval = 0

  constructor (opts: LatencySummaryOptions) {
    this.name = opts.name
    this.help = opts.help
    this.#labelNames = opts.labelNames
    this.#percentiles = opts.percentiles
    // A tick per interval, not a clock read per observation; it never holds the process open.
    this.#timer = setInterval(() => { this.#interval++ }, opts.maxAgeSeconds * 500)
    this.#timer.unref()
  }

  /** How many intervals have started since this summary was made (the window's clock). */
  get intervals (): number { return this.#interval }

  /** The series of these label values (in `labelNames` order); keep it: each call looks it up. */
  labels (...values: string[]): LatencySeries {
    const key = seriesKey(this.name, this.#labelNames, values)
    let series = this.#series.get(key)
    if (series === undefined) {
      const labels = labelObject(this.#labelNames, values)
      const created: Series = {
        key,
        labels,
        listed: true,
        interval: this.#interval,
        current: new DDSketch({ relativeAccuracy: RELATIVE_ACCURACY }),
        previous: null,
        count: 0,
        sum: 0,
        observer: { observe: (value) => { this.#observe(created, value) } }
      }
      this.#series.set(key, series = created)
    }
    return series.observer
  }

  #observe (series: Series, value: number): void {
    if (!(value >= 0) || value === Infinity) return // a clock step backwards, or garbage
    if (!series.listed) this.#relist(series)
    if (series.interval !== this.#interval) this.#rotate(series)
    series.current.accept(value)
    series.count++
    series.sum += value
  }

  /** Moves a series to the running interval: its last interval becomes `previous` if it was the one before. */
  #rotate (series: Series): void {
    const fresh = series.interval === this.#interval - 1 && series.current.count > 0
    series.previous = fresh ? series.current : null
    series.current = new DDSketch({ relativeAccuracy: RELATIVE_ACCURACY })
    series.interval = this.#interval
  }

  /** prom-client's metric interface: the family as its registry prints it (a Summary's shape). */
  get (): { name: string, help: string, type: string, aggregator: string, values: Sample[] } {
    const values: Sample[] = []
    for (const series of this.#series.values()) {
      if (series.interval !== this.#interval) this.#rotate(series)
      let window = series.current
      if (series.previous !== null) {
        window = new DDSketch({ relativeAccuracy: RELATIVE_ACCURACY })
        window.merge(series.previous)
        window.merge(series.current)
      }
      for (const quantile of this.#percentiles) {
        // An empty window reads 0, as prom-client's Summary printed it.
        values.push({ labels: { quantile, ...series.labels }, value: window.count > 0 ? window.getValueAtQuantile(quantile) : 0 })
      }
      values.push({ metricName: `${this.name}_sum`, labels: series.labels, value: series.sum })
      values.push({ metricName: `${this.name}_count`, labels: series.labels, value: series.count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  /**
   * Empties every series, as prom-client's reset does: a series is printed again from its next
   * observation. Callers keep their observers (labels() is looked up once), so those stay valid.
   */
  reset (): void {
    for (const series of this.#series.values()) series.listed = false
    this.#series.clear()
  }

  #relist (series: Series): void {
    series.listed = true
    series.current = new DDSketch({ relativeAccuracy: RELATIVE_ACCURACY })
    series.previous = null
    series.interval = this.#interval
    series.count = 0
    series.sum = 0
    this.#series.set(series.key, series)
  }

  /** Stops the interval tick (the app's onClose). */
  close (): void { clearInterval(this.#timer) }
}
