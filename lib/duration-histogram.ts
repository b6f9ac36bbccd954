// The request duration histogram's store (gateway_http_request_duration_seconds,
// docs/operations.md#metrics). prom-client's Histogram works out each observation's series from
// its label object, validating it and building its key, on every call, even through a label child
// (~1 µs per request here). This one hands the caller the series itself: an observation is a
// binary search over the bounds and three additions. It prints exactly what prom-client's
// Histogram prints (the same samples, in the same order, with the same exemplars), so the text,
// JSON and OpenMetrics outputs read it as they read a Histogram.
import { labelObject, seriesKey } from './metric-labels.js'

/** An exemplar as prom-client keeps one: the labels, the observed value, seconds since the epoch. */
export interface HistogramExemplar { labelSet: Record<string, string>, value: number, timestamp: number }

/** What `labels(...)` returns: the series' own observer, kept by the caller. */
export interface HistogramSeries {
  observe (value: number): void
  /** Observes and keeps `exemplar` as its bucket's latest (a traced request's trace id). */
  observeWithExemplar (value: number, exemplar: Record<string, string>): void
}

export interface DurationHistogramOptions {
  readonly name: string
  readonly help: string
  readonly labelNames: readonly string[]
  /** Upper bounds, ascending; +Inf is implied. */
  readonly buckets: readonly number[]
}

interface Series {
  readonly labels: Record<string, string>
  /** Per bucket (the last is +Inf), not cumulative. */
  readonly counts: Float64Array
  /** Per bucket, when an exemplar was kept for it. */
  readonly exemplars: Array<HistogramExemplar | null>
  sum: number
  count: number
  readonly observer: HistogramSeries
}

interface Sample {
  value: number
  metricName: string
  exemplar?: HistogramExemplar | null
  labels: Record<string, string | number>
}

export class DurationHistogram {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #labelNames: readonly string[]
  readonly #bounds: readonly number[]
  readonly #series = new Map<string, Series>()

  constructor (opts: DurationHistogramOptions) {
    this.name = opts.name
    this.help = opts.help
    this.#labelNames = opts.labelNames
    this.#bounds = opts.buckets
  }

  /** The series of these label values (in `labelNames` order); keep it: each call looks it up. */
  labels (...values: string[]): HistogramSeries {
    const key = seriesKey(this.name, this.#labelNames, values)
    let series = this.#series.get(key)
    if (series === undefined) {
      const labels = labelObject(this.#labelNames, values)
      const created: Series = {
        labels,
        counts: new Float64Array(this.#bounds.length + 1),
        exemplars: new Array<HistogramExemplar | null>(this.#bounds.length + 1).fill(null),
        sum: 0,
        count: 0,
        observer: {
          observe: (value) => { this.#observe(key, created, value) },
          observeWithExemplar: (value, exemplar) => {
            const bucket = this.#observe(key, created, value)
            if (bucket >= 0) created.exemplars[bucket] = { labelSet: exemplar, value, timestamp: Date.now() / 1000 }
          }
        }
      }
      this.#series.set(key, series = created)
    }
    return series.observer
  }

  /** Counts `value` in its bucket; returns the bucket's index, or -1 for a value that is not a number. */
  #observe (key: string, series: Series, value: number): number {
    if (!Number.isFinite(value)) return -1
    // A series emptied by reset() is printed again from its next observation.
    if (series.count === 0 && !this.#series.has(key)) this.#series.set(key, series)
    const bounds = this.#bounds
    let lo = 0
    let hi = bounds.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (bounds[mid] < value) lo = mid + 1
      else hi = mid
    }
    series.counts[lo]++
    series.sum += value
    series.count++
    return lo
  }

  /** prom-client's metric interface: the family as its Histogram prints it. */
  get (): { name: string, help: string, type: string, values: Sample[], aggregator: string } {
    const values: Sample[] = []
    const bucketName = `${this.name}_bucket`
    for (const series of this.#series.values()) {
      // prom-client's order: `le` first, then the series' labels.
      let cumulative = 0
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += series.counts[i]
        values.push({ value: cumulative, metricName: bucketName, exemplar: series.exemplars[i], labels: { le: this.#bounds[i], ...series.labels } })
      }
      const last = this.#bounds.length
      values.push(
        { value: series.count, metricName: bucketName, exemplar: series.exemplars[last], labels: { le: '+Inf', ...series.labels } },
        { value: series.sum, metricName: `${this.name}_sum`, exemplar: undefined, labels: { ...series.labels } },
        { value: series.count, metricName: `${this.name}_count`, exemplar: undefined, labels: { ...series.labels } }
      )
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  /**
   * Empties every series, as prom-client's reset does. Callers keep their observers (labels() is
   * looked up once), so those stay valid and bring their series back with their next observation.
   */
  reset (): void {
    for (const series of this.#series.values()) {
      series.counts.fill(0)
      series.exemplars.fill(null)
      series.sum = 0
      series.count = 0
    }
    this.#series.clear()
  }
}
