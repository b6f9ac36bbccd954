// The `api-gateway` command under test: in-process through runCli (its output captured), or as
// the real executable (bin/api-gateway.js, its shebang resolving `node` on PATH to the pinned Node
// as `npx` arranges) with a clean environment.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { runCli } from '../../src/cli/main.js'
import { REPO_ROOT } from './gateway-process.js'

export const CLI_BIN = join(REPO_ROOT, 'bin/api-gateway.js')
/** PATH with the pinned Node first, as npx and npm scripts set it. */
export const PINNED_PATH = `${join(REPO_ROOT, 'node_modules/.bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  cwd: string
  env: Record<string, string>
}

/** runCli in this process, with `env` as its whole environment. */
export async function cliInProcess (args: string[], { cwd, env }: CliOptions): Promise<CliRun> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, {
    env,
    cwd,
    stdout: { write: (s: string) => { stdout += s } },
    stderr: { write: (s: string) => { stderr += s } }
  })
  return { code, stdout, stderr }
}

/** Runs `command args` as a child process; resolves once it exited, with everything it wrote. */
export function runProcess (command: string, args: string[], { cwd, env }: CliOptions): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** The executable `api-gateway args` (env gets PATH and HOME unless it sets them). */
export function cliProcess (args: string[], { cwd, env }: CliOptions): Promise<CliRun> {
  return runProcess(CLI_BIN, args, { cwd, env: { PATH: PINNED_PATH, HOME: process.env.HOME ?? '/tmp', ...env } })
}
