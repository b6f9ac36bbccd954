// docs/configuration.md is the one page that lists every setting: it must name exactly the
// variables the config schema reads and exactly the fields of a service definition.
import { readFileSync } from 'node:fs'
import t from 'tap'
import type { z } from 'zod'
import { KNOWN_VARIABLES } from '../../lib/config.js'
import { ServiceFileEntry } from '../../lib/schemas/routes-file.js'

const page = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')

/** The first cell of every table row under the heading `title` (up to the next heading of any level). */
function firstCells (title: string): string[] {
  const start = page.indexOf(`\n${title}\n`)
  if (start === -1) throw new Error(`docs/configuration.md has no "${title}" heading`)
  const rest = page.slice(start + title.length + 2)
  const end = rest.search(/\n#{1,6} /)
  return (end === -1 ? rest : rest.slice(0, end)).split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split('|')[1])
}

/** Every field path of a zod object: nested objects as `a.b`, arrays of objects as `a[].b`. */
function fieldPaths (schema: z.ZodType, prefix = ''): string[] {
  // A union (`rateLimit: false | {rpm, burst}`) is one field: its row explains the forms.
  let inner = schema as z.ZodType & { def: { type: string, innerType?: z.ZodType, element?: z.ZodType }, shape?: Record<string, z.ZodType> }
  while (inner.def.innerType !== undefined) inner = inner.def.innerType as typeof inner
  if (inner.def.type === 'array' && inner.def.element !== undefined) return fieldPaths(inner.def.element, `${prefix}[]`)
  if (inner.def.type !== 'object' || inner.shape === undefined) return [prefix]
  return Object.entries(inner.shape).flatMap(([key, value]) => fieldPaths(value, prefix === '' ? key : `${prefix}.${key}`))
}

t.test('the Variables and Tracing tables name exactly the variables the gateway reads', async (t) => {
  // The OpenTelemetry variables have a table of their own (docs/tracing.md).
  const cells = [...firstCells('## Variables'), ...firstCells('## Tracing')]
  const documented = new Set(cells.flatMap((cell) => [...cell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1])))
  t.same([...documented].sort(), [...KNOWN_VARIABLES].sort())
})

t.test('the Service fields table names exactly the fields of a service definition', async (t) => {
  const documented = firstCells('### Service fields').map((cell) => cell.trim().replace(/^`|`$/g, ''))
  t.same([...new Set(documented)].sort(), fieldPaths(ServiceFileEntry).sort())
})
