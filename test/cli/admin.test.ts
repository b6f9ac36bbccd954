// `api-gateway keys …` and `services …` against a real gateway process (docs/cli.md): what the
// command prints, its exit status, and that the gateway really changed.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startBackend } from '../support/backends.js'
import { freePort, tempDir } from '../support/basics.js'
import { cliInProcess, cliProcess, runProcess } from '../support/cli.js'
import { ADMIN_PASSWORD, REPO_ROOT, startGateway } from '../support/gateway-process.js'

const backend = await startBackend((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ backend: 'orders', path: req.url }))
})
t.teardown(() => backend.close())
// SERVICES_SOURCE=store (no ROUTES_FILE): the admin API owns the services, starting with the two defaults.
const gw = await startGateway(t)
const dir = tempDir(t, 'gw-cli-admin-')
/** The operator's environment: where the admin API is and the password, never on the command line. */
const env = { GATEWAY_ADMIN_URL: gw.url, ADMIN_PASSWORD }
const cli = (...args: string[]) => cliInProcess(args, { cwd: dir, env })

interface KeyRecord { id: string, name: string, active: boolean, rate_limit: number | null, services: string[] | null }

t.test('keys create, list and revoke', async (t) => {
  const created = await cli('keys', 'create', '--name', 'ci-bot', '--rate-limit', '120', '--burst', '5', '--services', 'user-service', '--json')
  t.equal(created.code, 0, created.stderr)
  const { api_key: key, raw_key: rawKey } = JSON.parse(created.stdout) as { api_key: KeyRecord, raw_key: string }
  t.match(key, { name: 'ci-bot', active: true, rate_limit: 120, services: ['user-service'] })
  t.match(rawKey, /^gw_/)

  // The key is real: the gateway lets it through to the service (whose backend is down: 502/503, not 401).
  const before = await fetch(`${gw.url}/api/users/me`, { headers: { 'x-api-key': rawKey } })
  t.not(before.status, 401, `accepted before revocation (${before.status})`)

  const table = await cli('keys', 'list')
  t.equal(table.code, 0)
  const [header, ...rows] = table.stdout.trimEnd().split('\n')
  t.match(header, /^ID\s+NAME\s+ACTIVE\s+RATE_LIMIT\s+BURST\s+SERVICES\s+EXPIRES_AT\s+LAST_USED_AT$/)
  const row = rows.find((r) => r.startsWith(key.id))
  t.match(row, new RegExp(`^${key.id}\\s+ci-bot\\s+yes\\s+120\\s+5\\s+user-service\\s+-\\s`))
  t.notMatch(table.stdout, rawKey, 'the list never shows a raw key')

  const revoked = await cli('keys', 'revoke', key.id)
  t.equal(revoked.code, 0)
  t.equal(revoked.stdout, `API key ${key.id} revoked\n`)
  const after = await fetch(`${gw.url}/api/users/me`, { headers: { 'x-api-key': rawKey } })
  t.equal(after.status, 401, 'refused once revoked')

  const list = await cli('keys', 'list', '--json')
  const keys = JSON.parse(list.stdout) as KeyRecord[]
  t.equal(keys.find((k) => k.id === key.id)?.active, false)
})

t.test('keys revoke of an unknown id and a refused create exit 1 with the gateway\'s message', async (t) => {
  const unknown = await cli('keys', 'revoke', 'no-such-key')
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /^error: POST \/admin\/apikeys\/no-such-key\/revoke: 404 .*no-such-key/)
  // Key ids are base64url: one in 64 starts with '-', which must still be an id, not an option.
  for (const args of [['-L1UIBOfGx4J'], ['--json', '-L1UIBOfGx4J'], ['--', '-L1UIBOfGx4J']]) {
    const dashed = await cli('keys', 'revoke', ...args)
    t.equal(dashed.code, 1, `revoke ${args.join(' ')} reaches the gateway`)
    t.match(dashed.stderr, /^error: POST \/admin\/apikeys\/-L1UIBOfGx4J\/revoke: 404 /)
  }
  const refused = await cli('keys', 'create', '--name', 'x', '--services', 'nope')
  t.equal(refused.code, 1)
  t.match(refused.stderr, /^error: POST \/admin\/apikeys: 400 services\.0: must name a service of this gateway/)
})

t.test('wrong or missing credentials and an unreachable gateway exit 1 and say why', async (t) => {
  const wrong = await cliInProcess(['keys', 'list'], { cwd: dir, env: { GATEWAY_ADMIN_URL: gw.url, ADMIN_PASSWORD: 'wrong' } })
  t.equal(wrong.code, 1)
  t.equal(wrong.stderr.split('\n')[0].replace(/: 401 .*\(/, ': 401 … ('), 'error: GET /admin/apikeys: 401 … (check ADMIN_USERNAME and ADMIN_PASSWORD)')
  t.notMatch(wrong.stderr, /wrong/, 'the password is not echoed')
  const missing = await cliInProcess(['services', 'list'], { cwd: dir, env: { GATEWAY_ADMIN_URL: gw.url } })
  t.equal(missing.code, 1)
  t.match(missing.stderr, /401 .*ADMIN_PASSWORD is not set in the environment or \.env/)
  const closed = await freePort()
  const down = await cliInProcess(['keys', 'list'], { cwd: dir, env: { GATEWAY_ADMIN_URL: `http://127.0.0.1:${closed}`, ADMIN_PASSWORD } })
  t.equal(down.code, 1)
  t.equal(down.stderr, `error: cannot reach the admin API at http://127.0.0.1:${closed} (ECONNREFUSED); set GATEWAY_ADMIN_URL to where it listens\n`)
  const bad = await cliInProcess(['keys', 'list'], { cwd: dir, env: { GATEWAY_ADMIN_URL: 'http://admin:pw@127.0.0.1:1' } })
  t.equal(bad.code, 1)
  t.equal(bad.stderr, 'config error: GATEWAY_ADMIN_URL: must not carry credentials (set ADMIN_USERNAME and ADMIN_PASSWORD)\n')
})

t.test('without GATEWAY_ADMIN_URL the command calls the local gateway on PORT, with the password from .env', async (t) => {
  const cwd = tempDir(t, 'gw-cli-env-')
  writeFileSync(join(cwd, '.env'), `HOST=0.0.0.0\nPORT=${gw.port}\nADMIN_PASSWORD=${ADMIN_PASSWORD}\n`)
  const run = await cliInProcess(['services', 'list', '--json'], { cwd, env: {} })
  t.equal(run.code, 0, run.stderr)
  t.ok(Array.isArray((JSON.parse(run.stdout) as { services: unknown[] }).services))
  // With ADMIN_PORT the admin listener is the one called: here nothing listens on it.
  const closed = await freePort()
  const admin = await cliInProcess(['keys', 'list'], { cwd, env: { ADMIN_HOST: '127.0.0.1', ADMIN_PORT: String(closed) } })
  t.equal(admin.code, 1)
  t.match(admin.stderr, `cannot reach the admin API at http://127.0.0.1:${closed} (ECONNREFUSED)`)
  const invalid = await cliInProcess(['keys', 'list'], { cwd, env: { ADMIN_PORT: 'nine' } })
  t.equal(invalid.code, 1)
  t.equal(invalid.stderr, 'config error: ADMIN_PORT: must be a whole number\n')
})

t.test('services apply creates and replaces services from a file, and services list shows them', async (t) => {
  const file = join(dir, 'services.yaml')
  writeFileSync(file, `services:
  - name: orders
    prefix: /api/orders
    stripPrefix: true
    backends: [{ url: "${backend.url}" }]
  - name: user-service
    prefix: /api/users
    backends: [{ url: "${backend.url}", weight: 2 }]
`)
  const dry = await cli('services', 'apply', 'services.yaml', '--dry-run')
  t.equal(dry.code, 0, dry.stderr)
  t.match(dry.stdout, /^NAME\s+WOULD_BE\s+CHANGED\norders\s+created\s+\(new\)\nuser-service\s+updated\s+backends\n\ndry run: nothing was applied\n$/)
  t.equal((await fetch(`${gw.url}/api/orders/x`)).status, 404, 'a dry run applies nothing')

  const applied = await cli('services', 'apply', 'services.yaml', '--json')
  t.equal(applied.code, 0, applied.stderr)
  const outcomes = JSON.parse(applied.stdout) as Array<{ name: string, action: string, changed: string[], dry_run: boolean }>
  t.same(outcomes.map((o) => [o.name, o.action, o.dry_run]), [['orders', 'created', false], ['user-service', 'updated', false]])
  t.same(outcomes[1].changed, ['backends'])

  const proxied = await fetch(`${gw.url}/api/orders/42`)
  t.equal(proxied.status, 200, 'the new service proxies at once')
  t.same(await proxied.json(), { backend: 'orders', path: '/42' })

  const list = await cli('services', 'list', '--json')
  const body = JSON.parse(list.stdout) as { version: number, source: string, services: Array<{ name: string, prefix: string, backends: Array<{ url: string, weight: number }> }> }
  t.equal(body.source, 'store')
  t.same(body.services.map((s) => s.name).sort(), ['auth-service', 'orders', 'user-service'])
  t.same(body.services.find((s) => s.name === 'user-service')?.backends, [{ url: backend.url, weight: 2 }])

  const table = await cli('services', 'list')
  t.match(table.stdout, /^NAME\s+PREFIX\s+BACKENDS\s+AUTH\s+STRATEGY\s+VERSION\s+UPDATED_AT\n/)
  t.match(table.stdout, new RegExp(`\\norders\\s+/api/orders\\s+${backend.url.replaceAll('.', '\\.')}\\s+optional\\s+round-robin\\s+\\d+\\s`))
  t.match(table.stdout, new RegExp(`\\ntable version ${body.version}, source store\\n$`))

  const again = await cli('services', 'apply', file, '--json')
  t.same((JSON.parse(again.stdout) as Array<{ action: string }>).map((o) => o.action), ['unchanged', 'unchanged'], 'applying twice changes nothing')
})

t.test('services apply --prune removes the services the file does not name', async (t) => {
  const file = join(dir, 'only-orders.json')
  writeFileSync(file, JSON.stringify([{ name: 'orders', prefix: '/api/orders', stripPrefix: true, backends: [{ url: backend.url }] }]))
  const run = await cli('services', 'apply', file, '--prune')
  t.equal(run.code, 0, run.stderr)
  t.match(run.stdout, /\norders\s+unchanged\s+-\n/)
  t.match(run.stdout, /\nauth-service\s+deleted\s+/)
  const list = JSON.parse((await cli('services', 'list', '--json')).stdout) as { services: Array<{ name: string }> }
  t.same(list.services.map((s) => s.name), ['orders'])
})

t.test('services apply of an invalid file prints every problem and applies nothing', async (t) => {
  const file = join(dir, 'broken.yaml')
  writeFileSync(file, `- name: orders
  prefix: /api/orders
  backends: [{ url: "${backend.url}" }]
  timeoutMs: 0
- name: metrics
  prefix: /metrics/x
  backends: [{ url: "${backend.url}" }]
`)
  const run = await cli('services', 'apply', 'broken.yaml')
  t.equal(run.code, 1)
  t.same(run.stderr.trimEnd().split('\n'), [
    'broken.yaml: 0.timeoutMs: Too small: expected number to be >=1',
    'error: broken.yaml: 1 problem(s); nothing was applied'
  ])
  const collide = join(dir, 'collide.yaml')
  writeFileSync(collide, `- name: orders
  prefix: /api/orders
  backends: [{ url: "${backend.url}" }]
- name: metrics
  prefix: /metrics/x
  backends: [{ url: "${backend.url}" }]
`)
  const refused = await cli('services', 'apply', collide)
  t.equal(refused.code, 1)
  t.equal(refused.stderr, `${collide}: 1.prefix: service "metrics" uses "/metrics/x", which is the gateway's own /metrics\n` +
    `error: ${collide}: 1 problem(s); nothing was applied\n`)
  const list = JSON.parse((await cli('services', 'list', '--json')).stdout) as { services: Array<{ name: string, timeoutMs?: number }> }
  t.same(list.services.map((s) => s.name), ['orders'], 'nothing applied')
})

t.test('the executable and `npx api-gateway` print the same JSON as the command in-process', async (t) => {
  const inProcess = await cli('keys', 'list', '--json')
  const executable = await cliProcess(['keys', 'list', '--json'], { cwd: dir, env })
  t.equal(executable.code, 0, executable.stderr)
  t.same(JSON.parse(executable.stdout), JSON.parse(inProcess.stdout))
  // The system npx in the repository; the environment wins over any .env there.
  const npx = await runProcess('npx', ['--offline', 'api-gateway', 'services', 'list', '--json'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH?.split(':').filter((p) => !p.includes('node_modules')).join(':') ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env }
  })
  t.equal(npx.code, 0, npx.stderr)
  t.same((JSON.parse(npx.stdout) as { services: Array<{ name: string }> }).services.map((s) => s.name), ['orders'])
})

t.test('services apply to a gateway whose routes file is the truth exits 1 with its 409, changing nothing', async (t) => {
  const fileMode = await startGateway(t, { services: [{ name: 'fixed', prefix: '/api/fixed', backends: [{ url: backend.url }] }] })
  const file = join(dir, 'one.yaml')
  writeFileSync(file, `- name: other\n  prefix: /api/other\n  backends: [{ url: "${backend.url}" }]\n`)
  const run = await cliInProcess(['services', 'apply', file], { cwd: dir, env: { GATEWAY_ADMIN_URL: fileMode.url, ADMIN_PASSWORD } })
  t.equal(run.code, 1)
  t.match(run.stderr, /^error: PUT \/admin\/services\/other\?dry_run=true: 409 Services come from ROUTES_FILE \(SERVICES_SOURCE=file\)/)
  const list = await cliInProcess(['services', 'list', '--json'], { cwd: dir, env: { GATEWAY_ADMIN_URL: fileMode.url, ADMIN_PASSWORD } })
  t.same((JSON.parse(list.stdout) as { source: string, services: Array<{ name: string }> }).services.map((s) => s.name), ['fixed'])
})
