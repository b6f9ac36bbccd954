// The OpenMetrics text format (docs/tracing.md#exemplars), written from prom-client's JSON view of a
// registry. prom-client can print OpenMetrics itself only from a registry whose content type is
// fixed to it, and doing so renames every counter object in place (it strips `_total` from the
// metric's name), which would corrupt the Prometheus text the same metrics serve to every other
// scrape. This writer reads the same values without touching the metrics, so one registry serves
// Prometheus text, JSON and OpenMetrics (with the histograms' exemplars).

export const OPENMETRICS_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'

type LabelValue = string | number
interface Exemplar { labelSet: Record<string, LabelValue>, value: number, timestamp?: number }
interface Sample {
  labels: Record<string, LabelValue>
  value: number
  metricName?: string
  exemplar?: Exemplar | null
}
export interface MetricFamily {
  name: string
  help: string
  type: string
  values: Sample[]
}

const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
const escapeLabel = (v: LabelValue): string => String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

function number (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

function labels (set: Record<string, LabelValue>): string {
  let out = ''
  for (const name in set) {
    if (set[name] === undefined) continue
    out += `${out === '' ? '' : ','}${name}="${escapeLabel(set[name])}"`
  }
  return out === '' ? '' : `{${out}}`
}

/** The families in OpenMetrics text, ending with `# EOF`. */
export function openMetrics (families: readonly MetricFamily[]): string {
  const lines: string[] = []
  for (const family of families) {
    const counter = family.type === 'counter'
    // A counter's family is named without `_total`; its sample carries the suffix.
    const name = counter ? family.name.replace(/_total$/, '') : family.name
    lines.push(`# TYPE ${name} ${family.type === 'untyped' ? 'unknown' : family.type}`, `# HELP ${name} ${escapeHelp(family.help)}`)
    for (const sample of family.values) {
      const sampleName = counter ? `${name}_total` : sample.metricName ?? name
      let line = `${sampleName}${labels(sample.labels)} ${number(sample.value)}`
      const exemplar = sample.exemplar
      if (exemplar != null && exemplar.labelSet != null && Object.keys(exemplar.labelSet).length > 0) {
        line += ` # ${labels(exemplar.labelSet)} ${number(exemplar.value)}${exemplar.timestamp === undefined ? '' : ` ${exemplar.timestamp}`}`
      }
      lines.push(line)
    }
  }
  lines.push('# EOF')
  return `${lines.join('\n')}\n`
}
