// Keeps docker/ honest without a Docker engine: the compose file only sets variables the gateway
// reads (and they load), the files it mounts exist, and every metric the Grafana dashboard and
// the Prometheus rules query is exposed by a real gateway after real traffic.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { KNOWN_VARIABLES, loadConfig } from '../../lib/config.js'
import { SERVICE_5XX } from '../../plugins/gateway-metrics.js'
import { build } from '../support/app.js'
import { startBackend, status } from '../support/backends.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DOCKER = join(ROOT, 'docker')
const read = (file: string) => readFileSync(join(DOCKER, file), 'utf8')

interface ComposeService {
  build?: { context: string, dockerfile: string }
  image?: string
  environment?: Record<string, string> | string[]
  volumes?: string[]
  ports?: string[]
  command?: string[]
}
const compose = parseYaml(read('docker-compose.yml')) as { services: Record<string, ComposeService> }
const gateway = compose.services.gateway

function environment (svc: ComposeService): Record<string, string> {
  const env = svc.environment ?? {}
  if (!Array.isArray(env)) return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]))
  return Object.fromEntries(env.map((e) => [e.split('=')[0], e.slice(e.indexOf('=') + 1)]))
}

/** Compose interpolation for the forms we use: ${VAR}, ${VAR:-default}, ${VAR:?error}. */
function interpolate (value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
    if (vars[name] !== undefined && vars[name] !== '') return vars[name]
    if (op === '-') return arg ?? ''
    throw new Error(`${name} is required by docker-compose.yml: ${arg ?? ''}`)
  })
}

/** Every metric name a PromQL expression refers to (ours and the Node process ones). */
function metricNames (expr: string): string[] {
  return [...expr.matchAll(/\b((?:gateway|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1])
}

interface Panel { title?: string, targets?: Array<{ expr?: string }>, panels?: Panel[] }
interface Variable { name: string, type: string, definition?: string, query?: string | { query?: string } }
const dashboard = JSON.parse(read('grafana/dashboards/gateway.json')) as { uid: string, panels: Panel[], templating: { list: Variable[] } }
const dashboardExprs = (function collect (panels: Panel[]): string[] {
  return panels.flatMap((p) => [...(p.targets ?? []).map((x) => x.expr ?? ''), ...collect(p.panels ?? [])]).filter(Boolean)
})(dashboard.panels)
const rules = parseYaml(read('rules.yml')) as { groups: Array<{ rules: Array<{ alert?: string, record?: string, expr: string }> }> }
const ruleExprs = rules.groups.flatMap((g) => g.rules.map((r) => r.expr))

t.test('the compose file sets only variables the gateway reads', async (t) => {
  const env = environment(gateway)
  t.ok(Object.keys(env).length > 0)
  for (const name of Object.keys(env)) t.ok(KNOWN_VARIABLES.includes(name), `${name} is a known variable`)
})

t.test('only the gateway is published on every interface; Prometheus and Grafana on loopback', async (t) => {
  for (const [name, svc] of Object.entries(compose.services)) {
    for (const port of svc.ports ?? []) {
      // "host_ip:published:target" binds one interface; "published:target" binds them all.
      const parts = String(port).split(':')
      if (name === 'gateway') continue
      t.equal(parts.length, 3, `${name} ${port} names a host address`)
      t.equal(parts[0], '127.0.0.1', `${name} ${port} is bound to loopback`)
    }
  }
  t.same(compose.services.prometheus.ports, ['127.0.0.1:9090:9090'])
  t.same(compose.services.grafana.ports, ['127.0.0.1:3000:3000'])
  t.same(compose.services.jaeger.ports, ['127.0.0.1:16686:16686'], 'the Jaeger UI on loopback; OTLP only inside the network')
  t.same(gateway.ports, ['8081:8081'])
})

t.test('the admin listener has its own port, published nowhere, and Prometheus scrapes /metrics there', async (t) => {
  const env = environment(gateway)
  const adminPort = env.ADMIN_PORT
  t.ok(adminPort !== undefined && adminPort !== env.PORT, `ADMIN_PORT is set and differs from PORT (${adminPort})`)
  t.equal(env.ADMIN_HOST, '0.0.0.0', 'on the container\'s interfaces, so Prometheus reaches it over the compose network')
  for (const [name, svc] of Object.entries(compose.services)) {
    for (const port of svc.ports ?? []) {
      const parts = String(port).split(':')
      t.not(parts[parts.length - 1].split('/')[0], adminPort, `${name} does not publish the admin port (${port})`)
    }
  }
  t.notOk('expose' in gateway, 'nor exposes it beyond the compose network')
  const prom = parseYaml(read('prometheus.yml')) as { scrape_configs: Array<{ metrics_path?: string, static_configs: Array<{ targets: string[] }> }> }
  const targets = prom.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets))
  t.same(targets, [`gateway:${adminPort}`], 'Prometheus scrapes the admin listener only')
})

t.test('the gateway environment of the compose file is a valid configuration', async (t) => {
  const env = Object.fromEntries(Object.entries(environment(gateway)).map(([k, v]) => [k, interpolate(v, { ADMIN_PASSWORD: 'x' })]))
  const config = loadConfig(env, { dotenv: false })
  t.equal(config.storage, 'redis')
  t.equal(config.redis.host, 'redis')
  t.equal(config.port, 8081)
  t.same(config.adminListener, { host: '0.0.0.0', port: 8001 }, 'the admin API and /metrics on their own listener')
  const backends = config.services.flatMap((s) => s.backends.map((b) => new URL(b.url)))
  for (const url of backends) {
    const svc = compose.services[url.hostname]
    t.ok(svc, `backend host ${url.hostname} is a compose service`)
    t.equal(environment(svc ?? {}).PORT, url.port, `${url.hostname} listens on ${url.port}`)
  }
  t.throws(() => interpolate(gateway.environment !== undefined ? environment(gateway).ADMIN_PASSWORD : '', {}), /ADMIN_PASSWORD/,
    'compose refuses to start without ADMIN_PASSWORD')
})

t.test('the compose file builds the gateway from the repository with docker/Dockerfile', async (t) => {
  t.equal(resolve(DOCKER, gateway.build?.context ?? ''), ROOT)
  t.ok(existsSync(join(ROOT, gateway.build?.dockerfile ?? 'missing')))
  t.same(compose.services.redis.command, ['redis-server', '--appendonly', 'yes', '--appendfsync', 'everysec'])
  t.match(compose.services.redis.image, /^redis:7/)
  for (const [name, svc] of Object.entries(compose.services)) {
    for (const volume of svc.volumes ?? []) {
      const source = volume.split(':')[0]
      if (source.startsWith('.')) t.ok(existsSync(resolve(DOCKER, source)), `${name} mounts ${source}, which exists`)
    }
  }
})

t.test('the Dockerfile runs the compiled server as a non-root user on Node 24', async (t) => {
  const dockerfile = read('Dockerfile')
  const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])
  t.ok(froms.length >= 2, 'multi-stage')
  t.ok(froms.every((f) => /^node:24[.-]/.test(f)), 'official Node 24 images')
  t.match(dockerfile, /^USER node$/m)
  t.match(dockerfile, /^EXPOSE 8081$/m)
  t.match(dockerfile, /^HEALTHCHECK .*\n?.*\/health/m)
  t.match(dockerfile, /npm ci --omit=dev --ignore-scripts/)
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { main: string, scripts: { start: string } }
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)?.[1] ?? '[]') as string[]
  t.same(cmd, pkg.scripts.start.split(' '), 'CMD runs what npm start runs')
  t.equal(cmd[cmd.length - 1], pkg.main, 'CMD starts package.json main')
})

t.test('the image gets every file the build compiles, and nothing else from the repository', async (t) => {
  const dockerfile = read('Dockerfile')
  const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => m[1].trim().split(/\s+/).slice(0, -1))
  const allowed = read('Dockerfile.dockerignore').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1))
  for (const source of copied) t.ok(allowed.includes(source), `${source} passes the .dockerignore`)
  const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
  for (const dir of build.include) t.ok(copied.includes(dir), `${dir} (compiled by npm run build) is copied`)
  t.notOk(allowed.some((a) => a.startsWith('.env') || a === 'data'), 'no .env or data in the context')
})

t.test('Prometheus scrapes the gateway and loads the rules, Grafana gets the datasource and dashboard', async (t) => {
  const prom = parseYaml(read('prometheus.yml')) as {
    rule_files: string[]
    scrape_configs: Array<{ job_name: string, metrics_path?: string, static_configs: Array<{ targets: string[] }> }>
  }
  const job = prom.scrape_configs.find((s) => s.static_configs.some((c) => c.targets.includes(`gateway:${environment(gateway).ADMIN_PORT}`)))
  t.ok(job, 'a job scrapes the gateway\'s admin listener')
  t.equal(job?.metrics_path ?? '/metrics', '/metrics')
  const mounts = (compose.services.prometheus.volumes ?? []).map((v) => v.split(':'))
  for (const file of prom.rule_files) t.ok(mounts.some(([, target]) => target === file), `${file} is mounted`)
  for (const expr of ruleExprs) {
    if (expr.includes('job=')) t.match(expr, new RegExp(`job="${job?.job_name ?? ''}"`), 'rules use the scrape job name')
  }

  const datasources = parseYaml(read('grafana/provisioning/datasources/prometheus.yml')) as { datasources: Array<{ uid: string, url: string }> }
  const jaeger = parseYaml(read('grafana/provisioning/datasources/jaeger.yml')) as { datasources: Array<{ uid: string, url: string }> }
  const uids = new Set([...datasources.datasources, ...jaeger.datasources].map((d) => d.uid))
  t.match(datasources.datasources[0].url, /^http:\/\/prometheus:9090/)
  const used = new Set(JSON.stringify(dashboard).match(/"uid":\s*"[^"]+"/g)?.map((m) => m.replace(/"uid":\s*"|"/g, '')))
  used.delete(dashboard.uid)
  for (const uid of used) t.ok(uids.has(uid), `dashboard datasource ${uid} is provisioned`)
  const providers = parseYaml(read('grafana/provisioning/dashboards/gateway.yml')) as { providers: Array<{ options: { path: string } }> }
  const grafanaMounts = (compose.services.grafana.volumes ?? []).map((v) => v.split(':'))
  t.ok(grafanaMounts.some(([src, target]) => src === './grafana/dashboards' && target === providers.providers[0].options.path),
    'the dashboard folder is mounted where the provider reads it')
  t.ok(grafanaMounts.some(([src, target]) => src === './grafana/provisioning' && target === '/etc/grafana/provisioning'))
})

/** An expression without its `job="$job"` matcher (the dashboard's job variable). */
const withoutJob = (expr: string) => expr.replace(/\{job="\$job",?/g, '{').replace(/\{\}/g, '')

t.test('the dashboard shows the seed queries and the panels operators need', async (t) => {
  const all = dashboardExprs.map(withoutJob).join('\n')
  for (const seed of [
    'rate(gateway_http_requests_total[5m])',
    'rate(gateway_http_requests_total{status=~"5.."}[5m])',
    'gateway_http_request_duration_ms{quantile="0.95"}',
    'rate(gateway_rate_limited_total[5m])',
    'gateway_circuit_breaker_state'
  ]) t.ok(all.includes(seed), seed)
  for (const name of ['gateway_retries_total', 'gateway_backend_errors_total', 'gateway_http_request_duration_seconds_bucket']) {
    t.ok(all.includes(name), name)
  }
})

t.test('the dashboard picks the scrape job from a variable: no panel names a job itself', async (t) => {
  const job = dashboard.templating.list.find((v) => v.name === 'job')
  t.ok(job, 'a "job" variable exists')
  t.equal(job?.type, 'query')
  const query = typeof job?.query === 'string' ? job.query : job?.query?.query
  t.match(query, /^label_values\(gateway_[a-z_]+, job\)$/, 'its values are the jobs that scrape a gateway')
  for (const expr of dashboardExprs) {
    t.notMatch(expr, /job\s*=~?\s*"(?!\$job")/, `no hard-coded job: ${expr}`)
    for (const name of metricNames(expr)) t.match(expr, new RegExp(`\\b${name}\\{job="\\$job"`), `${name} is filtered by $job in: ${expr}`)
  }
})

t.test('the 5xx alert and panel count every 5xx series, and a fresh gateway has them at 0 before its first error', async (t) => {
  const alert = rules.groups.flatMap((g) => g.rules).find((r) => r.alert === 'GatewayHigh5xxRatio')
  const expr = (alert?.expr ?? '').replace(/\s+/g, ' ').trim()
  t.equal(expr, 'sum by (instance) (rate(gateway_http_requests_total{status=~"5.."}[5m])) / sum by (instance) (rate(gateway_http_requests_total[5m])) > 0.05',
    'the ratio of 5xx to all requests per instance, both rates over the same window')
  const statusRe = new RegExp(`^(?:${/status=~"([^"]+)"/.exec(expr)?.[1] ?? '$^'})$`)
  for (const status of SERVICE_5XX) t.match(String(status), statusRe, `${status} is counted by the alert`)
  const panel = dashboardExprs.find((e) => e.includes('status=~"5.."'))
  t.ok(panel, 'the dashboard has a 5xx panel')

  // rate() sees a burst only on a series that existed before it: the series the alert selects
  // must be there, at 0, for every service before any request.
  const app = await build(t, {})
  const text = (await app.inject('/metrics')).body
  const selected = [...text.matchAll(/^gateway_http_requests_total\{method="GET",path="([^"]+)",status="(\d+)"\} (\S+)$/gm)]
    .filter((m) => statusRe.test(m[2]))
  for (const prefix of app.serviceTables.current.routes.map((r) => r.prefix)) {
    const mine = selected.filter((m) => m[1] === prefix)
    t.same(mine.map((m) => Number(m[2])).sort(), [...SERVICE_5XX], `${prefix}: a 5xx series per status the gateway answers`)
    t.ok(mine.every((m) => m[3] === '0'), `${prefix}: all at 0`)
  }
})

t.test('every metric the dashboard and the alert rules query is exposed after real traffic', async (t) => {
  const ok = await startBackend()
  const failing = await startBackend(status(503))
  t.teardown(() => ok.close())
  t.teardown(() => failing.close())
  const app = await build(t, {
    AUTH_SERVICE_URL: failing.url,
    USER_SERVICE_URL: ok.url,
    RATE_LIMIT_RPM: '1',
    RATE_LIMIT_BURST: '6',
    CB_MAX_FAILURES: '2',
    RETRY_MAX_RETRIES: '1',
    RETRY_INITIAL_DELAY_MS: '0',
    RETRY_MAX_DELAY_MS: '0'
  })
  // One client address, one bucket of 6: 2 served, 3 failing (retried, then the breaker opens),
  // then 1 more served and the rest limited.
  for (let i = 0; i < 2; i++) await app.inject('/api/users/1')
  for (let i = 0; i < 3; i++) await app.inject('/api/auth/login')
  for (let i = 0; i < 4; i++) await app.inject('/api/users/1')
  await app.inject('/no/such/route')
  for (let i = 0; i < 5; i++) {
    t.equal((await app.inject('/metrics')).statusCode, 200, '/metrics is never rate limited')
  }

  const text = (await app.inject('/metrics')).body
  const exposed = new Set(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)?.[0]))
  // A labelled counter has no series before its first event (store errors, with healthy stores):
  // its declared family is enough there, as Prometheus shows it once it happens.
  const declared = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]))
  const family = (name: string) => name.replace(/_(bucket|sum|count)$/, '')
  const wanted = new Set([...dashboardExprs, ...ruleExprs].flatMap(metricNames))
  t.ok(wanted.size >= 10, `${wanted.size} metric names found in the dashboard and rules`)
  for (const name of wanted) t.ok(exposed.has(name) || declared.has(family(name)) || declared.has(name), `${name} is exposed`)
  t.ok(exposed.size > 0 && [...wanted].filter((n) => exposed.has(n)).length >= wanted.size - 1, 'all but the store-error series have samples')

  // The traffic moved what the dashboard draws.
  const sample = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN)
  t.ok(sample(/^gateway_http_requests_total\{method="GET",path="\/api\/users",status="200"\} (\S+)$/m) >= 1, 'request rate')
  t.ok(sample(/^gateway_http_requests_total\{method="GET",path="\/api\/auth",status="503"\} (\S+)$/m) >= 1, '5xx rate')
  t.ok(sample(/^gateway_rate_limited_total (\S+)$/m) >= 1, 'rate-limited requests')
  t.ok(sample(/^gateway_backend_errors_total\{service="auth-service"\} (\S+)$/m) >= 1, 'backend errors')
  t.ok(sample(/^gateway_backend_requests_total\{service="user-service"\} (\S+)$/m) >= 1, 'backend requests')
  t.ok(sample(/^gateway_circuit_breaker_trips_total\{service="auth-service"\} (\S+)$/m) >= 1, 'breaker trips')
  t.ok(sample(/^gateway_retries_total\{service="auth-service"\} (\S+)$/m) >= 1, 'retries')
  t.ok(sample(/^gateway_http_requests_total\{method="GET",path="unmatched",status="404"\} (\S+)$/m) >= 1, 'unmatched paths share one label')
})

t.test('tracing: the gateway exports to Jaeger in the compose network, and exemplars link to its traces', async (t) => {
  const env = Object.fromEntries(Object.entries(environment(gateway)).map(([k, v]) => [k, interpolate(v, { ADMIN_PASSWORD: 'x' })]))
  const tracing = loadConfig(env, { dotenv: false }).tracing
  t.equal(tracing.exporting, true)
  const collector = new URL(tracing.url)
  t.equal(collector.hostname, 'jaeger', 'the collector is the compose service')
  t.equal(collector.port, '4318', 'Jaeger\'s OTLP/HTTP port')
  t.equal(collector.pathname, '/v1/traces')
  t.ok(compose.services.jaeger, 'a jaeger service')
  t.match(compose.services.jaeger.image, /^jaegertracing\/(jaeger:2|all-in-one:1)/)
  t.equal(tracing.resource['service.name'], 'api-gateway')
  // The sample backends report their own spans to the same place, so one trace shows both hops.
  for (const name of ['auth-service', 'user-service']) t.equal(environment(compose.services[name]).OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger:4318')
  t.ok(compose.services.prometheus.command?.includes('--enable-feature=exemplar-storage'), 'Prometheus keeps exemplars')

  const prom = parseYaml(read('grafana/provisioning/datasources/prometheus.yml')) as { datasources: Array<{ uid: string, jsonData?: { exemplarTraceIdDestinations?: Array<{ name: string, datasourceUid: string }> } }> }
  const jaeger = parseYaml(read('grafana/provisioning/datasources/jaeger.yml')) as { datasources: Array<{ uid: string, type: string, url: string }> }
  t.same(prom.datasources[0].jsonData?.exemplarTraceIdDestinations, [{ name: 'trace_id', datasourceUid: jaeger.datasources[0].uid }], 'the exemplar label the gateway writes opens the trace')
  t.equal(jaeger.datasources[0].type, 'jaeger')
  t.match(jaeger.datasources[0].url, /^http:\/\/jaeger:16686/)
  const withExemplars = JSON.stringify(dashboard).includes('"exemplar":true')
  t.ok(withExemplars, 'a latency panel shows exemplars')

  // The label name the gateway really uses, on a real OpenMetrics scrape.
  const ok = await startBackend()
  t.teardown(() => ok.close())
  const app = await build(t, { USER_SERVICE_URL: ok.url, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_TIMEOUT: '200' })
  await app.inject('/api/users/1')
  const scrape = await app.inject({ method: 'GET', url: '/metrics', headers: { accept: 'application/openmetrics-text;version=1.0.0' } })
  t.match(scrape.body, /^gateway_http_request_duration_seconds_bucket\{.*\} \d+ # \{trace_id="[0-9a-f]{32}"\}/m)
})
