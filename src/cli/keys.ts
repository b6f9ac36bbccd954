// `api-gateway keys create|list|revoke` (docs/cli.md) over the admin API-key endpoints
// (docs/admin-api.md#api-keys). The raw key of a new key is printed once, as the API shows it once.
import type { ApiKeyRecordOut } from '../../lib/schemas/api-keys.js'
import { AdminClient } from './admin-client.js'
import { cell, parseCommand, printJson, table, UsageError, wholeNumber, type CliIo } from './io.js'
import type { AdminClientConfig } from '../../lib/config.js'

const JSON_FLAG = { json: { type: 'boolean' } } as const

function keyRows (keys: ApiKeyRecordOut[]): string {
  return table(
    ['ID', 'NAME', 'ACTIVE', 'RATE_LIMIT', 'BURST', 'SERVICES', 'EXPIRES_AT', 'LAST_USED_AT'],
    keys.map((k) => [k.id, k.name, k.active ? 'yes' : 'no', cell(k.rate_limit), cell(k.burst),
      k.services === null ? '(all)' : k.services.join(','), cell(k.expires_at), cell(k.last_used_at)])
  )
}

export async function keys (args: string[], io: CliIo, admin: AdminClientConfig): Promise<number> {
  const [sub, ...rest] = args
  const client = new AdminClient(admin)
  switch (sub) {
    case 'create': {
      const { values } = parseCommand(rest, {
        ...JSON_FLAG,
        name: { type: 'string' },
        'rate-limit': { type: 'string' },
        burst: { type: 'string' },
        services: { type: 'string' },
        'expires-at': { type: 'string' }
      }, [])
      if (typeof values.name !== 'string') throw new UsageError('keys create needs --name <name>')
      const body: Record<string, unknown> = { name: values.name }
      const rateLimit = wholeNumber(values, 'rate-limit')
      const burst = wholeNumber(values, 'burst')
      if (rateLimit !== undefined) body.rate_limit = rateLimit
      if (burst !== undefined) body.burst = burst
      if (typeof values.services === 'string') body.services = values.services.split(',').map((s) => s.trim()).filter(Boolean)
      if (typeof values['expires-at'] === 'string') body.expires_at = values['expires-at']
      const res = await client.request<{ data: { api_key: ApiKeyRecordOut, raw_key: string } }>('POST', '/admin/apikeys', body)
      if (values.json === true) {
        printJson(io, res.data)
      } else {
        io.stdout.write(keyRows([res.data.api_key]))
        io.stdout.write(`\nraw key (shown only now; store it safely): ${res.data.raw_key}\n`)
      }
      return 0
    }
    case 'list': {
      const { values } = parseCommand(rest, JSON_FLAG, [])
      const res = await client.request<{ data: ApiKeyRecordOut[] }>('GET', '/admin/apikeys')
      if (values.json === true) printJson(io, res.data)
      else io.stdout.write(res.data.length === 0 ? 'no API keys\n' : keyRows(res.data))
      return 0
    }
    case 'revoke': {
      const { values, positionals: [id] } = parseCommand(idsFirstClass(rest), JSON_FLAG, ['id'])
      const res = await client.request<{ message: string }>('POST', `/admin/apikeys/${encodeURIComponent(id)}/revoke`)
      if (values.json === true) printJson(io, { id, revoked: true, message: res.message })
      else io.stdout.write(`API key ${id} revoked\n`)
      return 0
    }
    default:
      throw new UsageError(sub === undefined ? 'keys needs a subcommand: create, list or revoke' : `unknown keys subcommand "${sub}" (create, list, revoke)`)
  }
}

/**
 * Key ids are base64url, so one in 64 starts with '-' and parseArgs would take it for an option.
 * `keys revoke` has no short options: every single-dash word is moved after `--`, a positional.
 */
function idsFirstClass (args: string[]): string[] {
  if (args.includes('--')) return args
  const dashed = args.filter((a) => /^-[^-]/.test(a))
  return dashed.length === 0 ? args : [...args.filter((a) => !/^-[^-]/.test(a)), '--', ...dashed]
}
