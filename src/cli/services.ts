// `api-gateway services list|apply <file>` (docs/cli.md) over the admin services endpoints
// (docs/admin-api.md#managing-services). `apply` reads the file with the routes file's own reader
// and rules, asks the gateway to validate every service (`?dry_run=true`) before it changes any,
// then PUTs each one; `--prune` also removes the services the file does not name.
import { resolve } from 'node:path'
import { readRoutesFile, type AdminClientConfig, type RetryConfig } from '../../lib/config.js'
import { EnvSchema } from '../../lib/schemas/env.js'
import type { ServiceDefinition } from '../../lib/schemas/routes-file.js'
import { AdminClient } from './admin-client.js'
import { CliFailure, parseCommand, printJson, table, UsageError, type CliIo } from './io.js'

type ServiceRecord = ServiceDefinition & { version: number, updated_at: string }
interface ListAnswer { data: ServiceRecord[], version: number, source: 'file' | 'store' }
interface ChangeAnswer {
  data: { action: string, diff: Record<string, unknown>, dry_run: boolean, table_version: number }
}
interface Outcome { name: string, action: string, changed: string[], dry_run: boolean, table_version: number | null }

const JSON_FLAG = { json: { type: 'boolean' } } as const

/**
 * The services of `file`, validated as start-up validates ROUTES_FILE. The gateway's own retry and
 * timeout defaults are not known here; the schema's are used, and the gateway checks again.
 */
function readServices (file: string, io: CliIo): ServiceDefinition[] {
  const defaults = EnvSchema.parse({})
  const retry: RetryConfig = {
    maxRetries: defaults.RETRY_MAX_RETRIES,
    initialDelayMs: defaults.RETRY_INITIAL_DELAY_MS,
    maxDelayMs: defaults.RETRY_MAX_DELAY_MS,
    multiplier: defaults.RETRY_MULTIPLIER,
    jitterFactor: defaults.RETRY_JITTER_FACTOR
  }
  const problems: string[] = []
  const services = readRoutesFile(resolve(io.cwd, file), retry, defaults.UPSTREAM_TIMEOUT_MS, problems)
  if (problems.length > 0) {
    for (const p of problems) io.stderr.write(`${file}: ${p.replace(/^ROUTES_FILE: /, '')}\n`)
    throw new CliFailure(`${file}: ${problems.length} problem(s); nothing was applied`)
  }
  return services.map((s) => s.definition)
}

export async function services (args: string[], io: CliIo, admin: AdminClientConfig): Promise<number> {
  const [sub, ...rest] = args
  const client = new AdminClient(admin)
  switch (sub) {
    case 'list': {
      const { values } = parseCommand(rest, JSON_FLAG, [])
      const res = await client.request<ListAnswer>('GET', '/admin/services')
      if (values.json === true) {
        printJson(io, { version: res.version, source: res.source, services: res.data })
        return 0
      }
      io.stdout.write(table(
        ['NAME', 'PREFIX', 'BACKENDS', 'AUTH', 'STRATEGY', 'VERSION', 'UPDATED_AT'],
        res.data.map((s) => [s.name, s.prefix, s.backends.map((b) => b.weight === 1 ? b.url : `${b.url}*${b.weight}`).join(','),
          s.auth, s.strategy, String(s.version), s.updated_at])
      ))
      io.stdout.write(`\ntable version ${res.version}, source ${res.source}\n`)
      return 0
    }
    case 'apply': {
      const { values, positionals: [file] } = parseCommand(rest, {
        ...JSON_FLAG, 'dry-run': { type: 'boolean' }, prune: { type: 'boolean' }
      }, ['file'])
      const definitions = readServices(file, io)
      const put = (d: ServiceDefinition, dryRun: boolean) =>
        client.request<ChangeAnswer>('PUT', `/admin/services/${encodeURIComponent(d.name)}${dryRun ? '?dry_run=true' : ''}`, d)
      const outcome = (name: string, a: ChangeAnswer): Outcome =>
        ({ name, action: a.data.action, changed: Object.keys(a.data.diff), dry_run: a.data.dry_run, table_version: a.data.table_version })

      // Every service validated by the gateway first, so one bad definition changes nothing.
      const results: Outcome[] = []
      for (const d of definitions) results.push(outcome(d.name, await put(d, true)))
      const dryRun = values['dry-run'] === true
      if (!dryRun) {
        results.length = 0
        for (const d of definitions) results.push(outcome(d.name, await put(d, false)))
      }
      if (values.prune === true) {
        const named = new Set(definitions.map((d) => d.name))
        const current = await client.request<ListAnswer>('GET', '/admin/services')
        for (const s of current.data.filter((s) => !named.has(s.name))) {
          if (dryRun) {
            results.push({ name: s.name, action: 'deleted', changed: [], dry_run: true, table_version: null })
          } else {
            results.push(outcome(s.name, await client.request<ChangeAnswer>('DELETE', `/admin/services/${encodeURIComponent(s.name)}`)))
          }
        }
      }
      if (values.json === true) {
        printJson(io, results)
        return 0
      }
      io.stdout.write(table(['NAME', dryRun ? 'WOULD_BE' : 'ACTION', 'CHANGED'],
        results.map((r) => [r.name, r.action, r.action === 'created' ? '(new)' : r.changed.length === 0 ? '-' : r.changed.join(',')])))
      const last = results.findLast((r) => r.table_version !== null)
      if (dryRun) io.stdout.write('\ndry run: nothing was applied\n')
      else if (last !== undefined) io.stdout.write(`\ntable version ${last.table_version}\n`)
      return 0
    }
    default:
      throw new UsageError(sub === undefined ? 'services needs a subcommand: list or apply' : `unknown services subcommand "${sub}" (list, apply)`)
  }
}
