// What a command of the `api-gateway` CLI (docs/cli.md) may touch: its environment, working
// directory and output streams. Passed in, so tests run the commands in-process.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'

export interface CliIo {
  env: NodeJS.ProcessEnv
  cwd: string
  stdout: { write (text: string): unknown }
  stderr: { write (text: string): unknown }
}

/** A wrong command line: exit status 2, with a pointer to `--help`. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** The command ran and failed (the gateway said no, or could not be reached): exit status 1. */
export class CliFailure extends Error {
  override name = 'CliFailure'
}

export type OptionValues = Record<string, string | boolean | undefined>

/**
 * Parses one command's arguments strictly (unknown options are usage errors) and checks the count
 * of positional arguments against `positionals` (their names, for the message).
 */
export function parseCommand (args: string[], options: ParseArgsOptionsConfig, positionals: string[]): { values: OptionValues, positionals: string[] } {
  const parsed = parseArgs({ args, options, allowPositionals: true, strict: true })
  if (parsed.positionals.length !== positionals.length) {
    const want = positionals.length === 0 ? 'no arguments' : positionals.map((p) => `<${p}>`).join(' ')
    throw new UsageError(`expected ${want}, got ${parsed.positionals.length === 0 ? 'none' : parsed.positionals.join(' ')}`)
  }
  return { values: parsed.values as OptionValues, positionals: parsed.positionals }
}

/** `--rate-limit 600` → 600; anything but a whole number is a usage error naming the option. */
export function wholeNumber (values: OptionValues, name: string): number | undefined {
  const raw = values[name]
  if (raw === undefined) return undefined
  if (typeof raw !== 'string' || !/^\d+$/.test(raw)) throw new UsageError(`--${name} must be a whole number`)
  return Number(raw)
}

/** Prints a value as indented JSON on stdout (`--json`). */
export function printJson (io: CliIo, value: unknown): void {
  io.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

/** Column-aligned rows under a header, two spaces apart; control characters shown as `?`. */
export function table (headers: string[], rows: string[][]): string {
  // eslint-disable-next-line no-control-regex
  const clean = (cell: string) => cell.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')
  const all = [headers, ...rows.map((r) => r.map(clean))]
  const widths = headers.map((_h, i) => Math.max(...all.map((r) => r[i].length)))
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}

/** A nullable value for a table cell. */
export const cell = (v: string | number | boolean | null | undefined): string => v === null || v === undefined ? '-' : String(v)
