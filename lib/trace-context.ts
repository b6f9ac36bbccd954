// W3C Trace Context (docs/tracing.md): reading a client's `traceparent`, writing the one a backend
// receives, and the sampled flag the configured sampler gives a request when no SDK span is built
// (export off). Pure functions: the tracing plugin calls them once per request or attempt.
import { ROOT_CONTEXT } from '@opentelemetry/api'
import { TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace'

/** The standard OTEL_TRACES_SAMPLER values. */
export const SAMPLERS = [
  'always_on', 'always_off', 'traceidratio',
  'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'
] as const
export type SamplerName = typeof SAMPLERS[number]

export interface SamplerConfig {
  readonly name: SamplerName
  /** OTEL_TRACES_SAMPLER_ARG: the ratio of the `traceidratio` samplers, 0..1. */
  readonly ratio: number
}

/** A valid parent from a client's `traceparent`. */
export interface RemoteParent {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

const HEX = /^[0-9a-f]+$/
const ZERO_TRACE = '00000000000000000000000000000000'
const ZERO_SPAN = '0000000000000000'

/**
 * The parent a `traceparent` field names, or null when it is absent or invalid (then the request
 * starts a new trace). Version 00 must be exactly 55 characters; a later version may carry more
 * after a `-`; `ff` is never valid; all-zero ids are invalid; upper-case hex is invalid. Two
 * `traceparent` lines (Node joins them with ", ") are invalid too.
 */
export function parseTraceparent (value: string | string[] | undefined): RemoteParent | null {
  if (typeof value !== 'string' || value.length < 55) return null
  if (value.charCodeAt(2) !== 0x2d || value.charCodeAt(35) !== 0x2d || value.charCodeAt(52) !== 0x2d) return null
  const version = value.slice(0, 2)
  if (version === 'ff' || !HEX.test(version)) return null
  if (version === '00' ? value.length !== 55 : value.length > 55 && value.charCodeAt(55) !== 0x2d) return null
  const traceId = value.slice(3, 35)
  const spanId = value.slice(36, 52)
  const flags = value.slice(53, 55)
  if (!HEX.test(traceId) || !HEX.test(spanId) || !HEX.test(flags)) return null
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

/** The `traceparent` a backend receives: this trace, the gateway's span for the attempt, the sampled flag. */
export function formatTraceparent (traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`
}

/**
 * The sampled flag the configured sampler decides, as the SDK's samplers would: the parent's flag
 * for the `parentbased_*` samplers when there is a parent, otherwise the root sampler. Used when
 * export is off, so a backend that traces still gets the decision the gateway would have made.
 */
export function sampledBy (sampler: SamplerConfig, ratioSampler: TraceIdRatioBasedSampler | null, parent: RemoteParent | null, traceId: string): boolean {
  const name = sampler.name
  if (parent !== null && name.startsWith('parentbased_')) return parent.sampled
  if (name === 'always_on' || name === 'parentbased_always_on') return true
  if (name === 'always_off' || name === 'parentbased_always_off') return false
  const ratio = ratioSampler ?? new TraceIdRatioBasedSampler(sampler.ratio)
  return ratio.shouldSample(ROOT_CONTEXT, traceId).decision !== 0
}
