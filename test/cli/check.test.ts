// `api-gateway check` and `start` (docs/cli.md): check reads the environment, `.env` and
// ROUTES_FILE through the same code as start-up and prints the same lines; start runs the gateway.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { spawn } from 'node:child_process'
import { freePort, tempDir, until, type Teardownable } from '../support/basics.js'
import { CLI_BIN, cliInProcess, cliProcess, PINNED_PATH, runProcess } from '../support/cli.js'
import { adminAuth, NODE_BIN, probe, REPO_ROOT, SERVER_JS } from '../support/gateway-process.js'

const GOOD_ROUTES = `services:
  - name: orders
    prefix: /api/orders
    backends: [{ url: "http://127.0.0.1:9" }]
`

/** A working directory holding `.env` and routes.yaml. */
function configDir (t: Teardownable, dotenv: string, routes: string): string {
  const dir = tempDir(t, 'gw-cli-')
  writeFileSync(join(dir, '.env'), dotenv)
  writeFileSync(join(dir, 'routes.yaml'), routes)
  return dir
}

/** The gateway itself (`node dist/src/server.js`) on the same directory and environment. */
function startGatewayDirectly (cwd: string, env: Record<string, string>) {
  return runProcess(NODE_BIN, [SERVER_JS], { cwd, env: { PATH: PINNED_PATH, ...env } })
}

t.test('check accepts a good configuration and says what start would run', async (t) => {
  const dir = configDir(t, 'ADMIN_PASSWORD=s3cret-pw\nROUTES_FILE=routes.yaml\nPORT=18090\n', GOOD_ROUTES)
  const run = await cliInProcess(['check'], { cwd: dir, env: {} })
  t.equal(run.code, 0)
  t.equal(run.stderr, '')
  t.equal(run.stdout, `configuration ok: listen 0.0.0.0:18090, store embedded (${join(dir, 'data')}/gateway.db), ` +
    `1 service(s) (file: ${join(dir, 'routes.yaml')}), admin on the public listener, admin auth on\n`)
  t.notMatch(run.stdout, /s3cret-pw/, 'never prints the password')
})

t.test('check --json prints the summary as JSON, from the executable', async (t) => {
  const dir = configDir(t, 'ROUTES_FILE=routes.yaml\nADMIN_PORT=18091\n', GOOD_ROUTES)
  const run = await cliProcess(['check', '--json'], { cwd: dir, env: { ADMIN_PASSWORD: 'pw', REDIS_URL: 'redis://:secret@10.1.2.3:6379/2' } })
  t.equal(run.code, 0, run.stderr)
  t.same(JSON.parse(run.stdout), {
    ok: true,
    listen: '0.0.0.0:8081',
    store: 'redis (redis://10.1.2.3:6379/2)',
    services: ['orders'],
    services_source: 'file',
    routes_file: join(dir, 'routes.yaml'),
    admin_auth: true,
    admin_listener: '127.0.0.1:18091'
  })
  t.notMatch(run.stdout, /secret/, 'the Redis password is not printed')
})

const BROKEN_ENV = 'ADMIN_PASSWORD=\nTRUST_PROXY=10.0.0.0/99\nHEADERS_TIMEOUT_MS=20000\nREQUEST_TIMEOUT_MS=10000\nROUTES_FILE=routes.yaml\n'
const BROKEN_ROUTES = `services:
  - name: orders
    prefix: /admin/orders
    backends: [{ url: "http://127.0.0.1:9" }]
  - name: orders
    prefix: /api/orders
    backends: [{ url: "http://127.0.0.1:9" }]
  - name: billing
    prefix: /api/orders/
    backends: [{ url: "http://127.0.0.1:9" }]
`

t.test('check on a broken configuration exits 1 with the lines start-up prints, one per problem', async (t) => {
  const dir = configDir(t, BROKEN_ENV, BROKEN_ROUTES)
  const check = await cliProcess(['check'], { cwd: dir, env: {} })
  t.equal(check.code, 1)
  t.equal(check.stdout, '')
  t.same(check.stderr.trimEnd().split('\n'), [
    'config error: ADMIN_PASSWORD: must be set when ADMIN_AUTH_ENABLED=true (or set ADMIN_AUTH_ENABLED=false)',
    'config error: HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS',
    'config error: TRUST_PROXY: must be false, true, a hop count or a list of IP addresses or CIDRs (prefix 0-32 for IPv4, 0-128 for IPv6; bad: 10.0.0.0/99)',
    'config error: ROUTES_FILE: 0.prefix: service "orders" uses "/admin/orders", which is the gateway\'s own /admin',
    'config error: ROUTES_FILE: 1.name: duplicate service name "orders"',
    'config error: ROUTES_FILE: 2.prefix: duplicate prefix "/api/orders"'
  ])
  const start = await startGatewayDirectly(dir, {})
  t.equal(start.code, 1, 'the gateway refuses to start on it')
  t.equal(start.stderr, check.stderr, 'with exactly the same lines')

  const json = await cliInProcess(['check', '--json'], { cwd: dir, env: {} })
  t.equal(json.code, 1)
  const parsed = JSON.parse(json.stdout) as { ok: boolean, problems: string[] }
  t.equal(parsed.ok, false)
  t.same(parsed.problems.map((p) => `config error: ${p}`), check.stderr.trimEnd().split('\n'))
})

t.test('check and start agree on invalid variables and on an unreadable routes file', async (t) => {
  const cases: Array<[string, Record<string, string>]> = [
    ['invalid values', { PORT: 'eighty', RATE_LIMIT_BURST: '0', ADMIN_PASSWORD: 'pw' }],
    ['a missing routes file', { ADMIN_PASSWORD: 'pw', ROUTES_FILE: 'missing.yaml' }],
    ['a routes file field of the wrong type', { ADMIN_PASSWORD: 'pw', ROUTES_FILE: 'routes.yaml' }]
  ]
  for (const [what, env] of cases) {
    const dir = configDir(t, '', 'services:\n  - name: a\n    prefix: /a\n    backends: [{ url: "http://127.0.0.1:9" }]\n    timeoutMs: "5s"\n')
    const check = await cliProcess(['check'], { cwd: dir, env })
    const start = await startGatewayDirectly(dir, env)
    t.equal(check.code, 1, `${what}: check exits 1`)
    t.equal(start.code, 1, `${what}: start exits 1`)
    t.match(check.stderr, /^config error: /, `${what}: ${check.stderr.trim()}`)
    t.equal(check.stderr, start.stderr, `${what}: the same lines`)
  }
})

t.test('a wrong command line exits 2 and points to --help; --help exits 0', async (t) => {
  const dir = tempDir(t, 'gw-cli-')
  for (const args of [[], ['chek'], ['check', 'extra'], ['check', '--jsn'], ['keys'], ['keys', 'create'], ['keys', 'revoke'],
    ['keys', 'create', '--name', 'x', '--rate-limit', 'ten'], ['services', 'apply'], ['start', 'now']]) {
    const run = await cliInProcess(args, { cwd: dir, env: { ADMIN_PASSWORD: 'pw' } })
    t.equal(run.code, 2, `${JSON.stringify(args)} → 2`)
    t.match(run.stderr, /^api-gateway: .+\nRun api-gateway --help for the commands and options\.\n$/)
    t.equal(run.stdout, '')
  }
  const help = await cliInProcess(['keys', '--help'], { cwd: dir, env: {} })
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: api-gateway <command>/)
})

t.test('`npx api-gateway` runs the command on the pinned Node', async (t) => {
  // The system npx, as an operator types it in the repository.
  const run = await runProcess('npx', ['--offline', 'api-gateway', '--help'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH?.split(':').filter((p) => !p.includes('node_modules')).join(':') ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' }
  })
  t.equal(run.code, 0, run.stderr)
  t.match(run.stdout, /^Usage: api-gateway <command>/)
})

t.test('start runs the gateway as npm start does, and stops on SIGTERM', async (t) => {
  const dir = configDir(t, 'ADMIN_PASSWORD=pw\nROUTES_FILE=routes.yaml\n', GOOD_ROUTES)
  const port = await freePort()
  const child = spawn(CLI_BIN, ['start'], {
    cwd: dir,
    env: { PATH: PINNED_PATH, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  t.teardown(() => { child.kill('SIGKILL') })
  t.ok(await until(async () => await probe(port) === 200, 20_000), '/health answers 200')
  const res = await fetch(`http://127.0.0.1:${port}/admin/services`, { headers: { authorization: adminAuth('admin', 'pw') } })
  const body = await res.json() as { data: Array<{ name: string }> }
  t.same(body.data.map((s) => s.name), ['orders'], 'serves the routes file of its working directory')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'drains and exits 0')
})
