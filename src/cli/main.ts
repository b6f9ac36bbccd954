// The `api-gateway` command (docs/cli.md): `start`, `check`, `keys …`, `services …`. Arguments are
// parsed with node:util parseArgs, strictly. Exit status: 0 done, 1 the command failed (invalid
// configuration, the gateway refused or could not be reached), 2 a wrong command line.
import { ConfigError, configErrorLines, loadAdminClientConfig } from '../../lib/config.js'
import { check } from './check.js'
import { CliFailure, UsageError, type CliIo } from './io.js'
import { keys } from './keys.js'
import { services } from './services.js'

export const USAGE = `Usage: api-gateway <command> [options]

Commands:
  start                        run the gateway (what npm start runs)
  check [--json]               validate the environment, .env and ROUTES_FILE as start would
  keys create --name <name> [--rate-limit <rpm>] [--burst <n>] [--services <a,b>]
              [--expires-at <iso-date-time>] [--json]
  keys list [--json]
  keys revoke <id> [--json]
  services list [--json]
  services apply <file> [--dry-run] [--prune] [--json]

keys and services call the admin API at GATEWAY_ADMIN_URL (default: the gateway on this
machine, ADMIN_HOST:ADMIN_PORT, else HOST:PORT) as ADMIN_USERNAME with ADMIN_PASSWORD, read
from the environment or .env, never from the command line.

Exit status: 0 ok, 1 failed or invalid configuration, 2 usage error.
`

const HELP = new Set(['help', '--help', '-h'])

/** The running process's streams, environment and directory. */
export function processIo (): CliIo {
  return { env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr }
}

/**
 * Runs one command line; resolves with the exit status, or null once `start` has the gateway
 * running (the process then lives until the gateway stops).
 */
export async function runCli (argv: string[], io: CliIo = processIo()): Promise<number | null> {
  const [command, ...rest] = argv
  try {
    if (command === undefined) throw new UsageError('missing command')
    if (HELP.has(command) || rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(USAGE)
      return 0
    }
    switch (command) {
      case 'start':
        if (rest.length > 0) throw new UsageError('start takes no arguments (it reads the environment and .env, as npm start does)')
        await import('../server.js')
        return null
      case 'check':
        return check(rest, io)
      case 'keys':
      case 'services': {
        const admin = adminClientConfig(io)
        if (admin === null) return 1
        return command === 'keys' ? await keys(rest, io, admin) : await services(rest, io, admin)
      }
      default:
        throw new UsageError(`unknown command "${command}"`)
    }
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      io.stderr.write(`api-gateway: ${(err as Error).message}\nRun api-gateway --help for the commands and options.\n`)
      return 2
    }
    if (err instanceof CliFailure) {
      io.stderr.write(`error: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

function adminClientConfig (io: CliIo) {
  try {
    return loadAdminClientConfig(io.env, { cwd: io.cwd })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    for (const line of configErrorLines(err)) io.stderr.write(line + '\n')
    return null
  }
}

/** parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown options and missing values. */
function isParseArgsError (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')
}
