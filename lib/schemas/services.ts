// zod schemas of the admin services resource (docs/admin-api.md#managing-services). Bodies are the routes file's own entry
// schema (lib/schemas/routes-file.ts): PUT takes a whole entry (its `name` optional, the URL names it), PATCH
// a JSON merge patch of one whose result is validated by that same schema.
import { z } from 'zod'
import { ServiceFileEntry } from './routes-file.js'

export const ServiceNameParams = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -')
})

export const DryRunQuery = z.strictObject({
  dry_run: z.enum(['true', 'false']).optional().describe('true: validate and report the diff without applying it')
})

export const PutServiceBody = ServiceFileEntry.extend({ name: ServiceFileEntry.shape.name.optional() })
  .describe('A service as the routes file declares it')

/** Every field optional and without defaults: absent means "keep", null means "remove" (RFC 7396). */
export const PatchServiceBody = z.strictObject(Object.fromEntries(
  Object.entries(ServiceFileEntry.shape).map(([k, s]) => [k, (s instanceof z.ZodDefault ? s.unwrap() as z.ZodType : s).nullable().optional()])
) as { [K in keyof typeof ServiceFileEntry.shape]: z.ZodOptional<z.ZodNullable<z.ZodType>> })
  .describe('A JSON merge patch of the service (RFC 7396)')

export const ServiceRecord = ServiceFileEntry.extend({
  version: z.number().int().describe('Table version at which this service was last written'),
  updated_at: z.string()
})

const DiffSchema = z.record(z.string(), z.object({ from: z.unknown(), to: z.unknown() }))
  .describe('Changed fields: old and new value (null when absent)')

export const ServiceListResponse = z.object({
  status: z.literal('success'),
  data: z.array(ServiceRecord),
  version: z.number().int().describe('Version of the service table in use'),
  source: z.enum(['file', 'store'])
})
export const ServiceOneResponse = z.object({ status: z.literal('success'), data: ServiceRecord })
export const ServiceChangeResponse = z.object({
  status: z.literal('success'),
  message: z.string(),
  data: z.object({
    service: ServiceRecord.nullable(),
    action: z.enum(['created', 'updated', 'unchanged', 'deleted']),
    diff: DiffSchema,
    dry_run: z.boolean(),
    table_version: z.number().int()
  })
})
