// The OpenTelemetry SDK pipeline for export (docs/tracing.md#export): a tracer provider of this
// app's own (never the global one: two gateways in one process keep their spans apart), the
// configured sampler, one BatchSpanProcessor with its bounded queue, and the OTLP exporter over
// HTTP (protobuf or JSON). Spans the processor drops (queue full, or an export that failed) are
// counted through the processor's own self-observability counter, the one place the SDK reports them.
import { createNoopMeter, type Attributes, type Counter, type Meter, type MeterProvider, type Tracer } from '@opentelemetry/api'
import {
  AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, RandomIdGenerator, TraceIdRatioBasedSampler, TracerProvider,
  type IdGenerator, type Sampler, type SpanExporter
} from '@opentelemetry/sdk-trace'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import type { TracingConfig } from '../../lib/schemas/otel-env.js'
import type { SamplerConfig } from '../../lib/trace-context.js'
import { VERSION } from '../../lib/version.js'

/** Why spans were lost: the queue was full, or the collector did not take a batch (down, slow, erroring). */
export type DropReason = 'queue_full' | 'export_failed'

/** The SDK sampler OTEL_TRACES_SAMPLER names. */
export function samplerFor (config: SamplerConfig): Sampler {
  const ratio = new TraceIdRatioBasedSampler(config.ratio)
  switch (config.name) {
    case 'always_on': return new AlwaysOnSampler()
    case 'always_off': return new AlwaysOffSampler()
    case 'traceidratio': return ratio
    case 'parentbased_always_on': return new ParentBasedSampler({ root: new AlwaysOnSampler() })
    case 'parentbased_always_off': return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio': return new ParentBasedSampler({ root: ratio })
  }
}

// The processor's counter of finished spans (semantic conventions: otel.sdk.processor.span.processed);
// a span it could not deliver carries `error.type`: `queue_full` or the export error's name.
const PROCESSED = 'otel.sdk.processor.span.processed'

/** A meter provider that hears only the processor's "processed" counter, and only its failures. */
function dropListener (onDropped: (count: number, reason: DropReason) => void): MeterProvider {
  const noop = createNoopMeter()
  const counter: Counter = {
    add (value: number, attributes?: Attributes) {
      const type = attributes?.['error.type']
      if (type === undefined || value <= 0) return
      onDropped(value, type === 'queue_full' ? 'queue_full' : 'export_failed')
    }
  }
  const meter: Meter = Object.create(noop) as Meter
  meter.createCounter = ((name: string, options?: object) => name === PROCESSED ? counter : noop.createCounter(name, options)) as Meter['createCounter']
  return { getMeter: () => meter }
}

/**
 * Random ids, except that the next root span may be given the trace id the gateway already chose:
 * the plugin decides sampling before asking the SDK for a span (an unsampled request never builds
 * one), and the SDK must then see the same trace id its ratio sampler will judge.
 */
export class PinnedTraceIds implements IdGenerator {
  readonly #random = new RandomIdGenerator()
  #next: string | null = null
  /** The trace id of the next root span started (synchronously) after this call. */
  pin (traceId: string | null): void { this.#next = traceId }
  generateTraceId (): string {
    const id = this.#next ?? this.#random.generateTraceId()
    this.#next = null
    return id
  }

  generateSpanId (): string { return this.#random.generateSpanId() }
}

export interface TracePipeline {
  readonly tracer: Tracer
  /** The provider's id generator (pin a root span's trace id). */
  readonly ids: PinnedTraceIds
  /** Sends what is queued, then stops; called on close. */
  shutdown (): Promise<void>
}

export function tracePipeline (config: TracingConfig, onDropped: (count: number, reason: DropReason) => void): TracePipeline {
  const options = { url: config.url, headers: { ...config.headers }, timeoutMillis: config.exportTimeoutMs }
  const exporter: SpanExporter = config.protocol === 'http/json' ? new JsonExporter(options) : new ProtobufExporter(options)
  const processor = new BatchSpanProcessor({
    exporter,
    ...config.batch,
    selfObsMeterProvider: dropListener(onDropped)
  })
  const ids = new PinnedTraceIds()
  const provider = new TracerProvider({
    resource: resourceFromAttributes(config.resource),
    sampler: samplerFor(config.sampler),
    idGenerator: ids,
    spanProcessors: [processor]
  })
  return {
    tracer: provider.getTracer('api-gateway', VERSION),
    ids,
    shutdown: () => provider.shutdown()
  }
}
