// zod schemas of the admin API-key resource (docs/admin-api.md#api-keys). The same schemas validate requests, shape
// responses (unknown fields such as the hash are stripped on output) and generate the OpenAPI
// document. Requests are strict: unknown fields → 400, no type coercion (docs/reliability.md,
// BI-12).
import { z } from 'zod'
import { isTimeZone } from '../quota-period.js'

/** Printable ASCII only: no control characters, no RTL override, no lookalike letters (BI-13). */
export const KEY_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._ -]{0,62}[A-Za-z0-9._-])?$/
export const KEY_ID_RE = /^[A-Za-z0-9_-]{1,64}$/

const positiveInt = (max: number) => z.number().int().min(1).max(max)

/** An API key's quota as a record shows it (docs/policies.md#quotas). */
export const QuotaSchema = z.object({
  limit: z.number().int().describe('Admitted requests per period'),
  period: z.enum(['hour', 'day', 'month']),
  timezone: z.string().describe('IANA time zone of the calendar periods')
}).describe('Quota: admitted requests per calendar period')

/** The quota in a create body: strict, the zone checked against the runtime's IANA database. */
export const QuotaInput = z.strictObject({
  limit: positiveInt(1_000_000_000).describe('Admitted requests per period'),
  period: z.enum(['hour', 'day', 'month']).describe('Calendar period: starts at the hour, midnight or the 1st in the time zone'),
  timezone: z.string().refine(isTimeZone, 'must be an IANA time zone such as UTC or Europe/Berlin').optional()
    .describe('IANA time zone of the periods (default UTC)')
})

export const ApiKeyRecordSchema = z.object({
  id: z.string(),
  name: z.string(),
  rate_limit: z.number().int().nullable().describe('Requests per minute; null = RATE_LIMIT_RPM'),
  burst: z.number().int().nullable().describe('Bucket capacity; null = RATE_LIMIT_BURST'),
  services: z.array(z.string()).nullable().describe('Services this key may call; null = all'),
  active: z.boolean(),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  last_used_at: z.string().nullable(),
  quota: QuotaSchema.nullable().describe('null = no quota')
}).describe('An API key record: never its hash or raw key')

export type ApiKeyRecordOut = z.infer<typeof ApiKeyRecordSchema>

/**
 * The create body; `services` must name services the gateway serves when the key is created
 * (`serviceNames` is asked at each validation: services change at run time, docs/admin-api.md#managing-services).
 */
export function createApiKeyBody (serviceNames: () => readonly string[]) {
  const names = z.string().refine((n) => serviceNames().includes(n), 'must name a service of this gateway (GET /admin/services lists them)')
  return z.strictObject({
    name: z.string()
      .max(64, 'must be at most 64 characters')
      .regex(KEY_NAME_RE, 'must be 1-64 characters of A-Z a-z 0-9 . _ - and inner spaces'),
    rate_limit: positiveInt(1_000_000).nullable().optional().describe('Requests per minute'),
    burst: positiveInt(1_000_000).nullable().optional().describe('Bucket capacity'),
    services: z.array(names).min(1).max(1000)
      .refine((a) => new Set(a).size === a.length, 'must not repeat a service')
      .meta({ uniqueItems: true }) // what the refine checks, for the OpenAPI document
      .nullable().optional(),
    expires_at: z.iso.datetime({ offset: true, error: 'must be an ISO-8601 date-time with a time zone' })
      .refine((s) => Date.parse(s) > Date.now(), 'must be in the future')
      .nullable().optional(),
    quota: QuotaInput.nullable().optional()
  })
}

export type CreateApiKeyBody = z.infer<ReturnType<typeof createApiKeyBody>>

export const ApiKeyIdParams = z.strictObject({
  id: z.string().regex(KEY_ID_RE, 'must be 1-64 characters of A-Z a-z 0-9 _ -')
})

export const CreatedResponse = z.object({
  status: z.literal('success'),
  message: z.string(),
  data: z.object({ api_key: ApiKeyRecordSchema, raw_key: z.string() })
})

export const UsageResponse = z.object({
  status: z.literal('success'),
  data: z.object({
    limit: z.number().int(),
    used: z.number().int().describe('Admitted requests counted in the current period'),
    remaining: z.number().int(),
    resets_at: z.string().describe('ISO-8601: when the current period ends and the count starts again'),
    period: z.enum(['hour', 'day', 'month']),
    timezone: z.string()
  })
})

export const ListResponse = z.object({ status: z.literal('success'), data: z.array(ApiKeyRecordSchema) })
export const OneResponse = z.object({ status: z.literal('success'), data: ApiKeyRecordSchema })
export const MessageResponse = z.object({ status: z.literal('success'), message: z.string() })

/** The error envelope every gateway error uses (lib/errors.ts). */
export const ErrorEnvelope = z.object({
  status: z.literal('error'),
  error: z.string(),
  message: z.string(),
  request_id: z.string().optional()
}).describe('The gateway error envelope')

/** "rate_limit: must be …; name: …" from zod issues: every message names its field (docs/admin-api.md#api-keys). */
export function describeIssues (issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>, message: string }>, root: string): string {
  return issues.slice(0, 5).map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : root}: ${i.message}`).join('; ')
}
