// The standard OpenTelemetry variables the gateway reads for tracing (docs/tracing.md), and the
// tracing configuration lib/config.ts builds from them. Only these names configure tracing; the
// gateway has no variables of its own for it.
import { z } from 'zod'
import { SAMPLERS, type SamplerConfig } from '../trace-context.js'

const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v)
const env = <T extends z.ZodType>(schema: T) => z.preprocess(blankToUndefined, schema)
const int = (min: number, max: number) =>
  z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(min).max(max))
const httpUrl = () => z.string().trim().refine((s) => {
  try {
    const u = new URL(s)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch { return false }
}, 'must be an http:// or https:// URL')
const PROTOCOLS = ['http/protobuf', 'http/json'] as const
const protocol = () => z.enum(PROTOCOLS, { message: 'must be http/protobuf or http/json (grpc is not supported)' })

export const OtelEnvShape = {
  OTEL_SDK_DISABLED: env(z.enum(['true', 'false'], { message: 'must be true or false' }).default('false')),
  OTEL_TRACES_EXPORTER: env(z.enum(['otlp', 'none'], { message: 'must be otlp or none' }).default('none')),
  OTEL_EXPORTER_OTLP_ENDPOINT: env(httpUrl().optional()),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: env(httpUrl().optional()),
  OTEL_EXPORTER_OTLP_PROTOCOL: env(protocol().default('http/protobuf')),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: env(protocol().optional()),
  OTEL_EXPORTER_OTLP_HEADERS: env(z.string().optional()),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: env(z.string().optional()),
  OTEL_EXPORTER_OTLP_TIMEOUT: env(int(1, 600_000).default(10_000)),
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: env(int(1, 600_000).optional()),
  OTEL_SERVICE_NAME: env(z.string().trim().optional()),
  OTEL_RESOURCE_ATTRIBUTES: env(z.string().optional()),
  OTEL_TRACES_SAMPLER: env(z.enum(SAMPLERS, { message: `must be one of ${SAMPLERS.join(', ')}` }).default('parentbased_always_on')),
  OTEL_TRACES_SAMPLER_ARG: env(z.string().trim().regex(/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/, 'must be a ratio from 0 to 1').transform(Number).optional()),
  OTEL_BSP_SCHEDULE_DELAY: env(int(1, 3_600_000).default(5000)),
  OTEL_BSP_EXPORT_TIMEOUT: env(int(1, 3_600_000).default(30_000)),
  OTEL_BSP_MAX_QUEUE_SIZE: env(int(1, 1_000_000).default(2048)),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: env(int(1, 1_000_000).default(512))
}

/** The parsed variables (what EnvSchema yields for these names). */
export const OtelEnvSchema = z.object(OtelEnvShape)
type OtelEnv = z.infer<typeof OtelEnvSchema>

export interface TracingConfig {
  /** OTLP export on (OTEL_TRACES_EXPORTER=otlp and the SDK not disabled); off: propagation only. */
  readonly exporting: boolean
  readonly protocol: typeof PROTOCOLS[number]
  /** The full URL spans are POSTed to (…/v1/traces). */
  readonly url: string
  /** Sent with every export (an API token of a tracing vendor, say): never logged. */
  readonly headers: Readonly<Record<string, string>>
  readonly exportTimeoutMs: number
  readonly sampler: SamplerConfig
  /** Resource attributes: OTEL_RESOURCE_ATTRIBUTES with service.name from OTEL_SERVICE_NAME (default api-gateway). */
  readonly resource: Readonly<Record<string, string>>
  readonly batch: {
    readonly scheduledDelayMillis: number
    readonly exportTimeoutMillis: number
    readonly maxQueueSize: number
    readonly maxExportBatchSize: number
  }
}

export const DEFAULT_OTLP_ENDPOINT = 'http://localhost:4318'

/**
 * `key=value` pairs separated by commas with percent-encoded values (the W3C Baggage form the
 * OTel specification uses for OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS). A bad
 * pair is a problem that names the variable, never its value (a header may hold a token).
 */
function keyValues (name: string, value: string | undefined, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  if (value === undefined) return out
  for (const part of value.split(',')) {
    if (part.trim() === '') continue
    const eq = part.indexOf('=')
    const key = eq === -1 ? '' : part.slice(0, eq).trim()
    let decoded: string | null = null
    if (key !== '') {
      try { decoded = decodeURIComponent(part.slice(eq + 1).trim()) } catch { decoded = null }
    }
    if (decoded === null) {
      problems.push(`${name}: must be comma-separated key=value pairs with percent-encoded values`)
      return out
    }
    out[key] = decoded
  }
  return out
}

/** The tracing configuration from the parsed variables; problems are pushed, each naming its variable. */
export function tracingConfig (e: OtelEnv, serviceVersion: string, problems: string[]): TracingConfig {
  const specific = e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  // The signal-specific endpoint is used as is; the general one gets the traces path appended.
  const url = specific ?? `${(e.OTEL_EXPORTER_OTLP_ENDPOINT ?? DEFAULT_OTLP_ENDPOINT).replace(/\/+$/, '')}/v1/traces`
  const sampler = e.OTEL_TRACES_SAMPLER
  const ratio = e.OTEL_TRACES_SAMPLER_ARG ?? 1
  const resource = keyValues('OTEL_RESOURCE_ATTRIBUTES', e.OTEL_RESOURCE_ATTRIBUTES, problems)
  resource['service.name'] = e.OTEL_SERVICE_NAME ?? resource['service.name'] ?? 'api-gateway'
  resource['service.version'] ??= serviceVersion
  const batchSize = Math.min(e.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, e.OTEL_BSP_MAX_QUEUE_SIZE)
  return {
    exporting: e.OTEL_TRACES_EXPORTER === 'otlp' && e.OTEL_SDK_DISABLED !== 'true',
    protocol: e.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? e.OTEL_EXPORTER_OTLP_PROTOCOL,
    url,
    headers: {
      ...keyValues('OTEL_EXPORTER_OTLP_HEADERS', e.OTEL_EXPORTER_OTLP_HEADERS, problems),
      ...keyValues('OTEL_EXPORTER_OTLP_TRACES_HEADERS', e.OTEL_EXPORTER_OTLP_TRACES_HEADERS, problems)
    },
    exportTimeoutMs: e.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? e.OTEL_EXPORTER_OTLP_TIMEOUT,
    sampler: { name: sampler, ratio },
    resource,
    batch: {
      scheduledDelayMillis: e.OTEL_BSP_SCHEDULE_DELAY,
      exportTimeoutMillis: e.OTEL_BSP_EXPORT_TIMEOUT,
      maxQueueSize: e.OTEL_BSP_MAX_QUEUE_SIZE,
      maxExportBatchSize: batchSize
    }
  }
}
