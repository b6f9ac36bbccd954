// The label sets of the gateway's own prom-client metrics (lib/latency-summary.ts,
// lib/duration-histogram.ts): a series is looked up once by its label values and kept by the caller.

/** The map key of the series these label values (in `labelNames` order) name; throws on a wrong count. */
export function seriesKey (metric: string, labelNames: readonly string[], values: readonly string[]): string {
  if (values.length !== labelNames.length) {
    throw new Error(`${metric}: expected ${labelNames.length} label values, got ${values.length}`)
  }
  return values.join('\u0000')
}

/** The labels object prom-client prints for these values: `{ name: value, … }` in `labelNames` order. */
export function labelObject (labelNames: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  labelNames.forEach((name, i) => { labels[name] = values[i] })
  return labels
}
