// The gateway under test as a child process (docs/reliability.md, How the cases run): compiled
// JavaScript on the pinned Node, its own free port, a clean environment and working directory (no
// stray `.env`), every stdout/stderr line kept in memory for log assertions, stopped by PID and
// always killed.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, sleep, tempDir, type Teardownable } from './basics.js'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const NODE_BIN = join(REPO_ROOT, 'node_modules/.bin/node')
export const SERVER_JS = join(REPO_ROOT, 'dist/src/server.js')

export const ADMIN_USER = 'admin'
export const ADMIN_PASSWORD = 'test-admin-password-8c1f'

export interface LogLine {
  level?: number
  msg?: string
  [k: string]: unknown
}

export interface ServiceSpec {
  name: string
  prefix: string
  backends: Array<string | { url: string, weight?: number }>
  [k: string]: unknown
}

export interface GatewayOptions {
  /** Variables on top of the harness defaults (values `undefined` remove a default). */
  env?: Record<string, string | undefined>
  /** Written to a ROUTES_FILE in the gateway's working directory when given. */
  services?: ServiceSpec[]
  /** Working directory (default: a fresh temp dir holding DATA_DIR and the routes file). */
  cwd?: string
  /** Extra flags for node, e.g. `--expose-gc`. */
  nodeArgs?: string[]
  /** Wait for `/health` 200 (default true). */
  waitHealthy?: boolean
  startTimeoutMs?: number
  /** Reuse this port (restart tests); default: a free one. */
  port?: number
}

const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of live) {
    try { if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL') } catch {}
  }
})

export class GatewayProcess {
  readonly port: number
  readonly url: string
  readonly cwd: string
  readonly env: Record<string, string>
  readonly child: ChildProcess
  readonly pid: number
  /** Every line, as written, in arrival order (both streams). */
  readonly lines: Array<{ stream: 'stdout' | 'stderr', text: string, at: number }> = []
  /** stdout lines that parsed as JSON (pino). */
  readonly logs: LogLine[] = []
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  exitInfo: { code: number | null, signal: NodeJS.Signals | null } | null = null

  constructor (child: ChildProcess, port: number, cwd: string, env: Record<string, string>) {
    this.child = child
    this.pid = child.pid as number
    this.port = port
    this.url = `http://127.0.0.1:${port}`
    this.cwd = cwd
    this.env = env
    live.add(child)
    for (const stream of ['stdout', 'stderr'] as const) {
      let buf = ''
      child[stream]?.setEncoding('utf8')
      child[stream]?.on('data', (d: string) => {
        buf += d
        let i
        while ((i = buf.indexOf('\n')) >= 0) {
          this.pushLine(stream, buf.slice(0, i))
          buf = buf.slice(i + 1)
        }
      })
      child[stream]?.on('end', () => { if (buf !== '') this.pushLine(stream, buf); buf = '' })
    }
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child)
        this.exitInfo = { code, signal }
        // Let the pipes flush their last lines first.
        setTimeout(() => resolve({ code, signal }), 50)
      })
    })
  }

  private pushLine (stream: 'stdout' | 'stderr', text: string): void {
    this.lines.push({ stream, text, at: Date.now() })
    if (stream === 'stdout' && text.startsWith('{')) {
      try { this.logs.push(JSON.parse(text)) } catch {}
    }
  }

  /** All output as one string (what SC-01 scans). */
  output (): string {
    return this.lines.map((l) => l.text).join('\n')
  }

  /**
   * Waits until the gateway has written every info line it had buffered: it writes info lines in
   * batches at least every 250 ms (lib/log-destination.ts). Call it before asserting what the
   * logs do or do not contain.
   */
  async logsSettled (): Promise<void> {
    await sleep(400)
  }

  get running (): boolean {
    return this.exitInfo === null
  }

  signal (sig: NodeJS.Signals): void {
    if (this.running) {
      try { process.kill(this.pid, sig) } catch {}
    }
  }

  /** Resolves with the first log line matching, or null after the timeout. */
  async waitForLog (pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine | null> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const hit = this.logs.find(pred)
      if (hit !== undefined) return hit
      if (Date.now() > end) return null
      await sleep(25)
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it exited. */
  async stop (graceMs = 10000): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    if (!this.running) return await this.exited
    this.signal('SIGTERM')
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs)
    const info = await this.exited
    clearTimeout(timer)
    return info
  }

  kill (): void {
    this.signal('SIGKILL')
  }
}

/** GET `path` on the gateway; resolves with the status, or 0 when the connection failed. */
export function probe (port: number, path = '/health', timeoutMs = 1000): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', () => resolve(0))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
    req.end()
  })
}

/** The environment every gateway under test starts from (docs/reliability.md, Test configuration). */
export function baseEnv (port: number, dataDir: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    HOST: '127.0.0.1',
    PORT: String(port),
    STORAGE: 'embedded',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'debug',
    ADMIN_USERNAME: ADMIN_USER,
    ADMIN_PASSWORD,
    UPSTREAM_TIMEOUT_MS: '500',
    RATE_LIMIT_BURST: '20',
    RATE_LIMIT_RPM: '600',
    CB_MAX_FAILURES: '5',
    CB_RESET_TIMEOUT_SECONDS: '2',
    CB_HALF_OPEN_MAX_REQUESTS: '1',
    CB_SUCCESS_THRESHOLD: '1',
    RETRY_MAX_RETRIES: '2',
    RETRY_INITIAL_DELAY_MS: '25',
    RETRY_MAX_DELAY_MS: '250',
    RETRY_MULTIPLIER: '2',
    RETRY_JITTER_FACTOR: '0.1',
    SHUTDOWN_TIMEOUT_MS: '10000',
    HEADERS_TIMEOUT_MS: '2000',
    REQUEST_TIMEOUT_MS: '5000',
    KEEP_ALIVE_TIMEOUT_MS: '5000',
    HEALTH_CHECK_INTERVAL_SECONDS: '3600',
    HEALTH_CHECK_TIMEOUT_SECONDS: '1'
  }
}

export class GatewayStartError extends Error {}

/**
 * Starts a gateway child; it is killed in `t`'s teardown whatever happens. Throws (with the
 * child's output) when it exits or does not answer `/health` 200 in time.
 */
export async function startGateway (t: Teardownable | null, options: GatewayOptions = {}): Promise<GatewayProcess> {
  if (!existsSync(SERVER_JS)) throw new GatewayStartError(`${SERVER_JS} is missing: run npm run build`)
  const ownDir = options.cwd === undefined
  const cwd = options.cwd ?? tempDir(null, 'gw-cwd-')
  const port = options.port ?? await freePort()
  const env = baseEnv(port, join(cwd, 'data'))
  if (options.services !== undefined) {
    const file = join(cwd, 'routes.json')
    writeFileSync(file, JSON.stringify({ services: options.services }, null, 2))
    env.ROUTES_FILE = file
  }
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  const child = spawn(NODE_BIN, [...(options.nodeArgs ?? []), SERVER_JS], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const gw = new GatewayProcess(child, port, cwd, env)
  t?.teardown(async () => {
    gw.kill()
    await gw.exited
    if (ownDir) rmSync(cwd, { recursive: true, force: true })
  })
  if (options.waitHealthy === false) return gw
  const end = Date.now() + (options.startTimeoutMs ?? 30000)
  for (;;) {
    if (!gw.running) throw new GatewayStartError(`gateway exited (${JSON.stringify(gw.exitInfo)}) before /health answered:\n${gw.output().slice(-4000)}`)
    if (await probe(port, '/health', 500) === 200) return gw
    if (Date.now() > end) {
      gw.kill()
      throw new GatewayStartError(`gateway did not answer /health 200 in time:\n${gw.output().slice(-4000)}`)
    }
    await sleep(50)
  }
}

/** The `Authorization` value for the test admin. */
export function adminAuth (user = ADMIN_USER, password = ADMIN_PASSWORD): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')
}
