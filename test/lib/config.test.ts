import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { KNOWN_VARIABLES, loadConfig } from '../../lib/config.js'
import { configProblems as problems } from '../support/app.js'
import { tempDir } from '../support/basics.js'

const base = { ADMIN_PASSWORD: 'pw' }
const load = (env: Record<string, string>, cwd?: string) => loadConfig({ ...base, ...env }, { dotenv: cwd !== undefined, cwd })

t.test('defaults match the seed and the spec', async (t) => {
  const c = load({})
  t.equal(c.host, '0.0.0.0')
  t.equal(c.port, 8081)
  t.equal(c.storage, 'embedded')
  t.same(c.rateLimit, { rpm: 60, burst: 10, failMode: 'open', storeTimeoutMs: 100, leases: true })
  t.same(c.circuitBreaker, { maxFailures: 5, resetTimeoutMs: 30000, halfOpenMaxRequests: 3, successThreshold: 2 })
  t.same(c.retry, { maxRetries: 3, initialDelayMs: 100, maxDelayMs: 5000, multiplier: 2, jitterFactor: 0.1 })
  t.same(c.admin, { authEnabled: true, username: 'admin', password: 'pw' })
  t.equal(c.redis.keyPrefix, 'gw:')
  t.equal(c.trustProxy, false)
  t.equal(c.corsOrigins, '*')
  t.equal(c.apiKeyRequired, false)
  t.equal(c.upstreamTimeoutMs, 30000)
  t.same(c.healthCheck, { intervalMs: 25000, timeoutMs: 4000 })
  t.equal(c.shutdownTimeoutMs, 25000)
  t.equal(c.shutdownDelayMs, 0)
  t.same(c.services.map((s) => [s.name, s.prefix, s.backends[0].url]), [
    ['auth-service', '/api/auth', 'http://localhost:8080'],
    ['user-service', '/api/users', 'http://localhost:8082']
  ])
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.services[0]))
})

t.test('storage defaults to redis when REDIS_URL or REDIS_HOST is set', async (t) => {
  t.equal(load({ REDIS_URL: 'redis://127.0.0.1:6379' }).storage, 'redis')
  t.equal(load({ REDIS_HOST: 'cache' }).storage, 'redis')
  t.equal(load({ REDIS_HOST: 'cache', STORAGE: 'embedded' }).storage, 'embedded')
})

t.test('SERVICES_SOURCE defaults to file with ROUTES_FILE (today\'s behaviour), else store', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'r.json'), JSON.stringify([{ name: 'a', prefix: '/a', backends: [{ url: 'http://127.0.0.1:1' }] }]))
  const file = load({ ROUTES_FILE: join(dir, 'r.json') })
  t.equal(file.servicesSource, 'file')
  t.equal(file.routesFile, join(dir, 'r.json'))
  t.equal(load({}).servicesSource, 'store')
  t.equal(load({}).routesFile, null)
  t.equal(load({ ROUTES_FILE: join(dir, 'r.json'), SERVICES_SOURCE: 'store' }).servicesSource, 'store')
  t.match(problems(() => load({ SERVICES_SOURCE: 'db' })), [/^SERVICES_SOURCE: /])
})

t.test('env booleans parse "false" as false and an empty variable means the default', async (t) => {
  t.equal(load({ API_KEY_REQUIRED: 'false' }).apiKeyRequired, false)
  t.equal(load({ API_KEY_REQUIRED: 'true' }).apiKeyRequired, true)
  t.equal(load({ ADMIN_AUTH_ENABLED: 'false', ADMIN_PASSWORD: '' }).admin.authEnabled, false)
  t.equal(load({ PORT: '' }).port, 8081)
})

t.test('every invalid variable is reported on its own line, naming it', async (t) => {
  const lines = problems(() => load({ PORT: 'abc', RATE_LIMIT_RPM: '-1', API_KEY_REQUIRED: 'maybe', REDIS_URL: 'http://x' }))
  for (const name of ['PORT', 'RATE_LIMIT_RPM', 'API_KEY_REQUIRED', 'REDIS_URL']) {
    t.ok(lines.some((l) => l.startsWith(`${name}:`)), `${name} named`)
  }
})

t.test('admin auth without a password refuses to start, naming ADMIN_PASSWORD', async (t) => {
  const lines = problems(() => loadConfig({ ADMIN_PASSWORD: '' }, { dotenv: false }))
  t.match(lines.join('\n'), /ADMIN_PASSWORD/)
})

t.test('TRUST_PROXY takes false, a hop count or a CIDR list', async (t) => {
  t.equal(load({ TRUST_PROXY: '2' }).trustProxy, 2)
  t.same(load({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy, ['10.0.0.0/8', '127.0.0.1'])
  t.match(problems(() => load({ TRUST_PROXY: 'everyone' })).join(), /TRUST_PROXY/)
})

t.test('TRUST_PROXY refuses what is not an IP address or a CIDR with a prefix in range, one line naming the bad entries', async (t) => {
  for (const bad of ['cafe', '999.1.1.1', '1.2.3.4/99', '1.2.3.4/33', '::1/129', '10.0.0.0/', '1.2.3', ':::', '1.2.3.4/-1', '1.2.3.4/08x']) {
    const lines = problems(() => load({ TRUST_PROXY: `127.0.0.1, ${bad}` }))
    t.equal(lines.length, 1, `${bad}: one problem`)
    t.match(lines[0], /^TRUST_PROXY: /, `${bad}: names TRUST_PROXY`)
    t.ok(lines[0].includes(bad), `${bad}: names the entry`)
    t.notOk(lines[0].includes('127.0.0.1'), `${bad}: and only the bad one`)
  }
  t.same(load({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1, ::1, fd00::/8, 0.0.0.0/0, 192.168.1.1/32, ::/0, 2001:db8::/128' }).trustProxy,
    ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', '0.0.0.0/0', '192.168.1.1/32', '::/0', '2001:db8::/128'])
})

t.test('WORKERS above one needs the redis store', async (t) => {
  t.match(problems(() => load({ WORKERS: '2' })).join(), /WORKERS/)
  t.equal(load({ WORKERS: '2', STORAGE: 'redis' }).workers, 2)
})

t.test('a .env file is read when present and real variables win', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, '.env'), 'PORT=9000\nRATE_LIMIT_RPM=120\n# comment\n')
  const c = load({ RATE_LIMIT_RPM: '30' }, dir)
  t.equal(c.port, 9000)
  t.equal(c.rateLimit.rpm, 30)
})

t.test('ROUTES_FILE in YAML declares services with normalised prefixes and merged retry', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'routes.yaml'), [
    'services:',
    '  - name: orders',
    '    prefix: /api/orders/',
    '    strategy: weighted',
    '    stripPrefix: true',
    '    auth: required',
    '    rateLimit: { rpm: 120, burst: 5 }',
    '    retry: { maxRetries: 1 }',
    '    backends:',
    '      - { url: "http://127.0.0.1:9001/", weight: 3 }',
    '      - { url: "http://127.0.0.1:9002" }'
  ].join('\n'))
  const c = load({ ROUTES_FILE: join(dir, 'routes.yaml') })
  t.equal(c.services.length, 1)
  const s = c.services[0]
  t.equal(s.prefix, '/api/orders')
  t.same(s.backends, [{ url: 'http://127.0.0.1:9001', weight: 3 }, { url: 'http://127.0.0.1:9002', weight: 1 }])
  t.equal(s.retry.maxRetries, 1)
  t.equal(s.retry.initialDelayMs, 100)
  t.same(s.rateLimit, { rpm: 120, burst: 5 })
  t.equal(s.healthPath, '/health')
  t.equal(s.unlimited, false)
})

t.test('a service may switch rate limiting off with rateLimit: false', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'r.json'), JSON.stringify([{ name: 'free', prefix: '/free', rateLimit: false, backends: [{ url: 'http://127.0.0.1:1' }] }]))
  const s = load({ ROUTES_FILE: join(dir, 'r.json') }).services[0]
  t.equal(s.unlimited, true)
  t.equal(s.rateLimit, null)
})

t.test('ROUTES_FILE problems name the file, the entry and the field', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  writeFileSync(file, JSON.stringify([{ name: 'a', prefix: 'no-slash', backends: [] }, { name: 'a', prefix: '/x', backends: [{ url: 'ftp://x' }] }]))
  const lines = problems(() => load({ ROUTES_FILE: file }))
  t.ok(lines.length >= 3)
  t.ok(lines.every((l) => l.startsWith('ROUTES_FILE:')))
  t.match(lines.join('\n'), /0\.prefix/)
  t.match(lines.join('\n'), /1\.backends\.0\.url/)
  t.match(problems(() => load({ ROUTES_FILE: join(dir, 'missing.json') })).join(), /cannot read/)
})

t.test('a duration a timer cannot hold (over 2^31-1 ms becomes 1 ms) is a config error naming the field', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  const huge = 2 ** 31
  writeFileSync(file, JSON.stringify([
    { name: 'a', prefix: '/a', timeoutMs: huge, backends: [{ url: 'http://127.0.0.1:1' }] },
    { name: 'b', prefix: '/b', retry: { initialDelayMs: huge, maxDelayMs: huge }, backends: [{ url: 'http://127.0.0.1:1' }] },
    { name: 'c', prefix: '/c', queueTimeoutMs: huge, wsIdleTimeoutMs: huge, backends: [{ url: 'http://127.0.0.1:1' }] }
  ]))
  const lines = problems(() => load({ ROUTES_FILE: file })).join('\n')
  t.match(lines, /^ROUTES_FILE: 0\.timeoutMs: must be at most 3600000 ms/m)
  t.match(lines, /^ROUTES_FILE: 1\.retry\.initialDelayMs: must be at most 600000 ms/m)
  t.match(lines, /^ROUTES_FILE: 1\.retry\.maxDelayMs: must be at most 600000 ms/m)
  t.match(lines, /^ROUTES_FILE: 2\.queueTimeoutMs: /m)
  t.match(lines, /^ROUTES_FILE: 2\.wsIdleTimeoutMs: /m)
  writeFileSync(file, JSON.stringify([{ name: 'a', prefix: '/a', timeoutMs: 3_600_000, retry: { initialDelayMs: 600_000, maxDelayMs: 600_000 }, backends: [{ url: 'http://127.0.0.1:1' }] }]))
  t.equal(load({ ROUTES_FILE: file }).services[0].timeoutMs, 3_600_000, 'the bounds themselves are accepted')
  for (const name of ['UPSTREAM_TIMEOUT_MS', 'UPSTREAM_IDLE_TIMEOUT_MS', 'RETRY_INITIAL_DELAY_MS', 'RETRY_MAX_DELAY_MS', 'SHUTDOWN_TIMEOUT_MS',
    'SHUTDOWN_DELAY_MS', 'RATE_LIMIT_STORE_TIMEOUT_MS', 'HEADERS_TIMEOUT_MS', 'REQUEST_TIMEOUT_MS', 'KEEP_ALIVE_TIMEOUT_MS']) {
    t.match(problems(() => load({ [name]: String(huge) })).join('\n'), new RegExp(`^${name}: `, 'm'), name)
  }
  for (const name of ['HEALTH_CHECK_INTERVAL_SECONDS', 'HEALTH_CHECK_TIMEOUT_SECONDS', 'CB_RESET_TIMEOUT_SECONDS']) {
    t.match(problems(() => load({ [name]: String(huge / 1000) })).join('\n'), new RegExp(`^${name}: `, 'm'), name)
  }
})

t.test('KNOWN_VARIABLES lists every variable of the spec', async (t) => {
  for (const v of ['HOST', 'PORT', 'REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'REDIS_DB', 'RATE_LIMIT_RPM', 'RATE_LIMIT_BURST',
    'CB_MAX_FAILURES', 'CB_RESET_TIMEOUT_SECONDS', 'CB_HALF_OPEN_MAX_REQUESTS', 'CB_SUCCESS_THRESHOLD', 'RETRY_MAX_RETRIES',
    'RETRY_INITIAL_DELAY_MS', 'RETRY_MAX_DELAY_MS', 'RETRY_MULTIPLIER', 'RETRY_JITTER_FACTOR', 'ADMIN_AUTH_ENABLED',
    'ADMIN_USERNAME', 'ADMIN_PASSWORD', 'AUTH_SERVICE_URL', 'USER_SERVICE_URL', 'STORAGE', 'REDIS_URL', 'REDIS_CLUSTER_NODES',
    'REDIS_KEY_PREFIX', 'DATA_DIR', 'ROUTES_FILE', 'TRUST_PROXY', 'CORS_ORIGINS', 'API_KEY_REQUIRED', 'UPSTREAM_TIMEOUT_MS',
    'HEALTH_CHECK_INTERVAL_SECONDS', 'HEALTH_CHECK_TIMEOUT_SECONDS', 'SHUTDOWN_TIMEOUT_MS', 'SHUTDOWN_DELAY_MS', 'RATE_LIMIT_FAIL_MODE', 'LOG_LEVEL']) {
    t.ok(KNOWN_VARIABLES.includes(v), v)
  }
})

t.test('a backend URL must be an origin, not a path', async (t) => {
  t.match(problems(() => load({ USER_SERVICE_URL: 'http://users:8080/v1' })).join(), /USER_SERVICE_URL: must be an origin/)
  t.equal(load({ USER_SERVICE_URL: 'http://users:8080/' }).services[1].backends[0].url, 'http://users:8080')
})

t.test('CLIENT_SEND_TIMEOUT_MS is a positive whole number of ms a timer can hold, 60 s by default', async (t) => {
  t.equal(load({}).clientSendTimeoutMs, 60_000)
  t.equal(load({ CLIENT_SEND_TIMEOUT_MS: '500' }).clientSendTimeoutMs, 500)
  t.equal(load({ CLIENT_SEND_TIMEOUT_MS: String(2 ** 31 - 1) }).clientSendTimeoutMs, 2 ** 31 - 1)
  for (const bad of ['0', '-1', '1.5', 'abc', String(2 ** 31)]) {
    t.match(problems(() => load({ CLIENT_SEND_TIMEOUT_MS: bad })), [/^CLIENT_SEND_TIMEOUT_MS: /], `${bad} is refused, naming the variable`)
  }
})
