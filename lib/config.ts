// The only reader of process.env, `.env` and ROUTES_FILE. Everything is validated once, here (the
// zod schemas are in lib/schemas/env.ts and lib/schemas/routes-file.ts; this file merges `.env`,
// cross-checks and shapes), and the rest of the gateway reads plain, frozen values (docs/configuration.md).
import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { extname, resolve } from 'node:path'
import { parseEnv } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { EnvSchema } from './schemas/env.js'
import { RoutesFileSchema, ServiceFileEntry, type IssuerDefinition, type ServiceDefinition } from './schemas/routes-file.js'
import { isHttpUrl } from './schemas/url.js'
import { tracingConfig, type TracingConfig } from './schemas/otel-env.js'
import { VERSION } from './version.js'
import { partitionAlgorithms } from './jwt.js'

export { KNOWN_VARIABLES } from './schemas/env.js'

export type BalanceStrategy = 'round-robin' | 'weighted' | 'random'
export type ServiceAuth = 'optional' | 'required' | 'none'
export type AuthMethod = 'apikey' | 'jwt'

export interface RetryConfig {
  maxRetries: number
  initialDelayMs: number
  maxDelayMs: number
  multiplier: number
  jitterFactor: number
}

export interface BackendConfig {
  url: string
  weight: number
}

export interface ServiceConfig {
  name: string
  /** Normalised: starts with `/`, no trailing `/` (except the root prefix `/`). */
  prefix: string
  backends: BackendConfig[]
  strategy: BalanceStrategy
  stripPrefix: boolean
  timeoutMs: number
  auth: ServiceAuth
  /** Credentials the service accepts (docs/jwt.md); `auth: required` means one of them. */
  authMethods: readonly AuthMethod[]
  /** Scopes a JWT must carry to call the service; empty: none. API keys carry no scopes. */
  scopes: readonly string[]
  rateLimit: { rpm: number, burst: number } | null
  /** `rateLimit: false` in the routes file: this service takes no tokens at all. */
  unlimited: boolean
  retry: RetryConfig
  healthPath: string
  /** In-flight requests allowed at once (null: unlimited) and how long one may wait for a slot. */
  concurrency: { max: number | null, queueTimeoutMs: number }
  /** WebSocket upgrades are tunnelled to this service (plugins/websocket/). */
  websocket: boolean
  wsMaxMessageBytes: number
  wsIdleTimeoutMs: number
  /** WebSocket tunnels open (or opening) at once for this service; null: no bound of its own. */
  maxTunnels: number | null
  /** The response cache (docs/caching.md), or null when the service caches nothing. */
  cache: CacheConfig | null
  /** The validated routes-file entry this service was shaped from (what the store keeps). */
  definition: ServiceDefinition
}

/** A service's response cache settings (docs/caching.md). */
export interface CacheConfig {
  ttlSeconds: number
  maxEntryBytes: number
  staleIfErrorSeconds: number
}

/** One accepted token issuer (docs/jwt.md). */
export interface IssuerConfig {
  /** The exact `iss` value accepted. */
  issuer: string
  /** Where its keys are; null: OpenID Connect discovery from `<issuer>/.well-known/openid-configuration`. */
  jwksUrl: string | null
  /** `aud` must contain one of these; null: not checked. */
  audiences: string[] | null
  /** Allowed `alg` values (never none or HS*). */
  algorithms: string[]
}

export interface JwtConfig {
  /** Empty: JWT consumers are off and every non-key Bearer passes through untouched. */
  issuers: IssuerConfig[]
  clockToleranceSeconds: number
  /** The claim naming the consumer (`sub` by default). */
  consumerClaim: string
  /** true: the backend receives the token; false: Authorization is removed. */
  forwardToken: boolean
  /** Algorithms configured but refused (none, HS*): start-up logs a warning naming them. */
  refusedAlgorithms: string[]
}

export interface RedisConfig {
  url: string | null
  host: string
  port: number
  password: string | null
  db: number
  clusterNodes: Array<{ host: string, port: number }> | null
  keyPrefix: string
}

export interface Config {
  host: string
  port: number
  storage: 'embedded' | 'redis'
  redis: RedisConfig
  dataDir: string
  trustProxy: boolean | number | string[]
  corsOrigins: '*' | string[]
  apiKeyRequired: boolean
  upstreamTimeoutMs: number
  /** Longest silence allowed inside a streamed response body (SSE, long polls). */
  upstreamIdleTimeoutMs: number
  /** Longest a relayed response may wait for the client to take more bytes before both sides are cut. */
  clientSendTimeoutMs: number
  healthCheck: { intervalMs: number, timeoutMs: number }
  shutdownTimeoutMs: number
  /** After SIGTERM, keep accepting (with /health 503) this long before draining. */
  shutdownDelayMs: number
  /** leases: busy Redis buckets are served from tokens leased ahead (docs/performance.md#the-redis-bucket-lease). */
  rateLimit: { rpm: number, burst: number, failMode: 'open' | 'closed', storeTimeoutMs: number, leases: boolean }
  circuitBreaker: {
    maxFailures: number
    resetTimeoutMs: number
    halfOpenMaxRequests: number
    successThreshold: number
  }
  retry: RetryConfig
  admin: { authEnabled: boolean, username: string, password: string }
  services: ServiceConfig[]
  /** `file`: ROUTES_FILE (or the default services) is the truth; `store`: the admin API (docs/admin-api.md#managing-services). */
  servicesSource: 'file' | 'store'
  /** The ROUTES_FILE path, absolute, for SIGHUP re-reads; null when unset. */
  routesFile: string | null
  logLevel: string
  /** Access lines of /health, /ready and /metrics at info (true) or at debug (false, the default). */
  logProbes: boolean
  workers: number
  bodyLimit: number
  server: { headersTimeoutMs: number, requestTimeoutMs: number, keepAliveTimeoutMs: number }
  /**
   * Load shedding: the listener's connection cap, the global in-flight cap and the global cap on
   * open WebSocket tunnels (null: none).
   */
  shedding: { maxConnections: number, maxConcurrentRequests: number | null, maxWebsocketTunnels: number | null }
  /** The embedded response cache's bound in bytes (docs/caching.md); unused with STORAGE=redis. */
  cacheMaxBytes: number
  /** The admin plane's own listener, or null to serve it on the public one (docs/configuration.md#load-shedding). */
  adminListener: { host: string, port: number } | null
  /** Trace context and OpenTelemetry export, from the standard OTEL_* variables (docs/tracing.md). */
  tracing: TracingConfig
  /** JWT and OpenID Connect consumers (docs/jwt.md). */
  jwt: JwtConfig
}

/** One line per problem, each naming the variable. */
export class ConfigError extends Error {
  readonly problems: string[]
  constructor (problems: string[]) {
    super(problems.join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** Paths the gateway answers itself; a service prefix may not take them (`/` may: it is the fallback). */
export const GATEWAY_PATHS: readonly string[] = ['/health', '/ready', '/metrics', '/info', '/services', '/admin']

const ADMIN_PASSWORD_MISSING = 'ADMIN_PASSWORD: must be set when ADMIN_AUTH_ENABLED=true (or set ADMIN_AUTH_ENABLED=false)'

export interface LoadOptions {
  /** Directory holding `.env` and relative paths; defaults to process.cwd(). */
  cwd?: string
  /** Read `.env` from cwd when present (default true). */
  dotenv?: boolean
}

/** Builds the configuration, or throws ConfigError listing every problem. */
export function loadConfig (source: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): Config {
  const cwd = options.cwd ?? process.cwd()
  const merged = mergedEnvironment(source, options)

  const parsed = EnvSchema.safeParse(merged)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${String(i.path[0])}: ${i.message}`)
    // Report the missing password too, so one run lists every problem.
    if ((merged.ADMIN_AUTH_ENABLED ?? 'true').trim().toLowerCase() !== 'false' && (merged.ADMIN_PASSWORD ?? '') === '') lines.push(ADMIN_PASSWORD_MISSING)
    throw new ConfigError(lines)
  }
  const e = parsed.data
  const problems: string[] = []

  if (e.ADMIN_AUTH_ENABLED && (e.ADMIN_PASSWORD === undefined || e.ADMIN_PASSWORD === '')) {
    problems.push(ADMIN_PASSWORD_MISSING)
  }
  if (e.HEADERS_TIMEOUT_MS > e.REQUEST_TIMEOUT_MS) {
    problems.push('HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS')
  }
  if (e.RETRY_MAX_DELAY_MS < e.RETRY_INITIAL_DELAY_MS) {
    problems.push('RETRY_MAX_DELAY_MS: must be at least RETRY_INITIAL_DELAY_MS')
  }
  const redisConfigured = e.REDIS_URL !== undefined || e.REDIS_HOST !== undefined || e.REDIS_CLUSTER_NODES !== undefined
  const storage = e.STORAGE ?? (redisConfigured ? 'redis' : 'embedded')
  if (e.WORKERS > 1 && storage !== 'redis') {
    problems.push('WORKERS: more than one worker needs STORAGE=redis (the embedded store is one process)')
  }
  if (e.ADMIN_HOST !== undefined && e.ADMIN_PORT === undefined) {
    problems.push('ADMIN_HOST: needs ADMIN_PORT (the admin plane stays on the public listener without it)')
  }
  const trustProxy = parseTrustProxy(e.TRUST_PROXY, problems)
  const corsOrigins = parseCorsOrigins(e.CORS_ORIGINS, problems)
  const tracing = tracingConfig(e, VERSION, problems)

  const retry: RetryConfig = {
    maxRetries: e.RETRY_MAX_RETRIES,
    initialDelayMs: e.RETRY_INITIAL_DELAY_MS,
    maxDelayMs: e.RETRY_MAX_DELAY_MS,
    multiplier: e.RETRY_MULTIPLIER,
    jitterFactor: e.RETRY_JITTER_FACTOR
  }
  const fileIssuers: IssuerDefinition[] = []
  const services = e.ROUTES_FILE !== undefined
    ? readRoutesFile(resolve(cwd, e.ROUTES_FILE), retry, e.UPSTREAM_TIMEOUT_MS, problems, fileIssuers)
    : defaultServices(e.AUTH_SERVICE_URL, e.USER_SERVICE_URL, retry, e.UPSTREAM_TIMEOUT_MS)
  const jwt = jwtConfig(e, fileIssuers, problems)
  if (jwt.issuers.length === 0) {
    services.forEach((s, i) => {
      if (s.authMethods.length === 1 && s.authMethods[0] === 'jwt') problems.push(`ROUTES_FILE: ${i}.authMethods: ${JWT_OFF}`)
    })
  }

  if (problems.length > 0) throw new ConfigError(problems)

  return deepFreeze({
    host: e.HOST,
    port: e.PORT,
    storage,
    redis: {
      url: e.REDIS_URL ?? null,
      host: e.REDIS_HOST ?? '127.0.0.1',
      port: e.REDIS_PORT,
      password: e.REDIS_PASSWORD ?? null,
      db: e.REDIS_DB,
      clusterNodes: e.REDIS_CLUSTER_NODES?.map((hp) => {
        const i = hp.lastIndexOf(':')
        return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) }
      }) ?? null,
      keyPrefix: e.REDIS_KEY_PREFIX
    },
    dataDir: resolve(cwd, e.DATA_DIR),
    trustProxy,
    corsOrigins,
    apiKeyRequired: e.API_KEY_REQUIRED,
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT_MS,
    upstreamIdleTimeoutMs: e.UPSTREAM_IDLE_TIMEOUT_MS,
    clientSendTimeoutMs: e.CLIENT_SEND_TIMEOUT_MS,
    healthCheck: {
      intervalMs: Math.round(e.HEALTH_CHECK_INTERVAL_SECONDS * 1000),
      timeoutMs: Math.round(e.HEALTH_CHECK_TIMEOUT_SECONDS * 1000)
    },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownDelayMs: e.SHUTDOWN_DELAY_MS,
    rateLimit: {
      rpm: e.RATE_LIMIT_RPM,
      burst: e.RATE_LIMIT_BURST,
      failMode: e.RATE_LIMIT_FAIL_MODE,
      storeTimeoutMs: e.RATE_LIMIT_STORE_TIMEOUT_MS,
      leases: e.RATE_LIMIT_LEASES
    },
    circuitBreaker: {
      maxFailures: e.CB_MAX_FAILURES,
      resetTimeoutMs: Math.round(e.CB_RESET_TIMEOUT_SECONDS * 1000),
      halfOpenMaxRequests: e.CB_HALF_OPEN_MAX_REQUESTS,
      successThreshold: e.CB_SUCCESS_THRESHOLD
    },
    retry,
    admin: {
      authEnabled: e.ADMIN_AUTH_ENABLED,
      username: e.ADMIN_USERNAME,
      password: e.ADMIN_PASSWORD ?? ''
    },
    services,
    servicesSource: e.SERVICES_SOURCE ?? (e.ROUTES_FILE !== undefined ? 'file' : 'store'),
    routesFile: e.ROUTES_FILE !== undefined ? resolve(cwd, e.ROUTES_FILE) : null,
    logLevel: e.LOG_LEVEL,
    logProbes: e.LOG_PROBES,
    workers: e.WORKERS,
    bodyLimit: e.BODY_LIMIT_BYTES,
    server: {
      headersTimeoutMs: e.HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS
    },
    shedding: {
      maxConnections: e.MAX_CONNECTIONS,
      maxConcurrentRequests: e.MAX_CONCURRENT_REQUESTS ?? null,
      maxWebsocketTunnels: e.MAX_WEBSOCKET_TUNNELS ?? null
    },
    cacheMaxBytes: e.CACHE_MAX_BYTES,
    adminListener: e.ADMIN_PORT === undefined ? null : { host: e.ADMIN_HOST ?? '127.0.0.1', port: e.ADMIN_PORT },
    tracing,
    jwt
  })
}

/** `.env` from the working directory (when present and wanted), then the real environment, which wins. */
function mergedEnvironment (source: NodeJS.ProcessEnv, options: LoadOptions): Record<string, string | undefined> {
  const merged: Record<string, string | undefined> = {}
  if (options.dotenv !== false) {
    const file = resolve(options.cwd ?? process.cwd(), '.env')
    if (existsSync(file)) Object.assign(merged, parseEnv(readFileSync(file, 'utf8')))
  }
  for (const [k, v] of Object.entries(source)) if (v !== undefined) merged[k] = v
  return merged
}

const JWT_OFF = 'service accepts only "jwt" but no issuer is configured (set JWT_ISSUER or issuers in ROUTES_FILE)'

/**
 * The accepted issuers: JWT_ISSUER (with JWT_JWKS_URL, JWT_AUDIENCE) first, then the routes
 * file's `issuers`; JWT_ALGORITHMS and the other JWT_* variables are the defaults of every one.
 */
function jwtConfig (e: ReturnType<typeof EnvSchema.parse>, fromFile: IssuerDefinition[], problems: string[]): JwtConfig {
  const refused = new Set<string>()
  const algorithms = (list: string[], where: string): string[] => {
    const { allowed, refused: bad, unknown } = partitionAlgorithms(list)
    for (const alg of bad) refused.add(alg)
    if (unknown.length > 0) problems.push(`${where}: unknown algorithm ${unknown.join(', ')} (use RS256, PS256, ES256, EdDSA, …)`)
    else if (allowed.length === 0) problems.push(`${where}: none and HS* algorithms are never accepted; list at least one asymmetric algorithm (RS256, ES256, EdDSA, …)`)
    return allowed
  }
  const defaults = algorithms(e.JWT_ALGORITHMS, 'JWT_ALGORITHMS')
  const issuers: IssuerConfig[] = []
  const seen = new Set<string>()
  // `where`: null for the JWT_* variables, else the routes-file path of the entry.
  const add = (d: IssuerDefinition, where: string | null): void => {
    const name = (field: 'issuer' | 'jwksUrl'): string => where !== null ? `${where}${field}` : field === 'issuer' ? 'JWT_ISSUER' : 'JWT_JWKS_URL'
    if (seen.has(d.issuer)) problems.push(`${name('issuer')}: "${d.issuer}" is configured twice`)
    seen.add(d.issuer)
    if (d.jwksUrl === undefined && !isHttpUrl(d.issuer)) {
      problems.push(`${name('issuer')}: must be an http(s) URL for OpenID Connect discovery, or give its JWKS URL (${name('jwksUrl')})`)
    }
    issuers.push({
      issuer: d.issuer,
      jwksUrl: d.jwksUrl ?? null,
      audiences: d.audiences ?? null,
      algorithms: d.algorithms === undefined ? defaults : algorithms(d.algorithms, `${where ?? ''}algorithms`)
    })
  }
  if (e.JWT_ISSUER !== undefined) {
    add({ issuer: e.JWT_ISSUER, jwksUrl: e.JWT_JWKS_URL, audiences: e.JWT_AUDIENCE?.length === 0 ? undefined : e.JWT_AUDIENCE }, null)
  } else {
    if (e.JWT_JWKS_URL !== undefined) problems.push('JWT_JWKS_URL: needs JWT_ISSUER (the iss its tokens carry)')
    if (e.JWT_AUDIENCE !== undefined) problems.push('JWT_AUDIENCE: needs JWT_ISSUER')
  }
  fromFile.forEach((d, i) => add(d, `ROUTES_FILE: issuers.${i}.`))
  return {
    issuers,
    clockToleranceSeconds: e.JWT_CLOCK_TOLERANCE_SECONDS,
    consumerClaim: e.JWT_CONSUMER_CLAIM,
    forwardToken: e.JWT_FORWARD_TOKEN,
    refusedAlgorithms: [...refused]
  }
}

/**
 * The default services (no ROUTES_FILE) and the variable each one's backend comes from. With
 * SERVICES_SOURCE=store they are seeded into the store, and a later start with a changed variable
 * updates a default service nobody changed through the admin API (plugins/services/index.ts).
 */
export const DEFAULT_SERVICE_VARIABLES: Readonly<Record<string, string>> = { 'auth-service': 'AUTH_SERVICE_URL', 'user-service': 'USER_SERVICE_URL' }

function defaultServices (authUrl: string, userUrl: string, retry: RetryConfig, timeoutMs: number): ServiceConfig[] {
  const entry = (name: string, prefix: string, url: string) => ServiceFileEntry.parse({ name, prefix, backends: [{ url }] })
  return [
    serviceFromDefinition(entry('auth-service', '/api/auth', authUrl), retry, timeoutMs),
    serviceFromDefinition(entry('user-service', '/api/users', userUrl), retry, timeoutMs)
  ]
}

/** The prefix a definition serves, normalised (no trailing `/` except the root). */
export function normalPrefix (prefix: string): string {
  return prefix.length > 1 ? prefix.replace(/\/+$/, '') : prefix
}

/** The gateway path a prefix would take over, or undefined when it is free. */
export function gatewayPathTaken (prefix: string): string | undefined {
  // Allocation-free: the proxy asks this per request that only a root service (`/`) would serve.
  for (const own of GATEWAY_PATHS) {
    if (prefix.startsWith(own) && (prefix.length === own.length || prefix.charCodeAt(own.length) === 0x2f)) return own
  }
  return undefined
}

/** Shapes one validated definition into what the proxy reads (defaults from the environment). */
export function serviceFromDefinition (s: ServiceDefinition, retry: RetryConfig, timeoutMs: number): ServiceConfig {
  return {
    name: s.name,
    prefix: normalPrefix(s.prefix),
    backends: s.backends.map((b) => ({ url: b.url.replace(/\/+$/, ''), weight: b.weight })),
    strategy: s.strategy,
    stripPrefix: s.stripPrefix,
    timeoutMs: s.timeoutMs ?? timeoutMs,
    auth: s.auth,
    authMethods: s.authMethods ?? ['apikey', 'jwt'],
    scopes: s.scopes ?? [],
    rateLimit: s.rateLimit === false ? null : s.rateLimit ?? null,
    unlimited: s.rateLimit === false,
    retry: { ...retry, ...s.retry },
    healthPath: s.healthPath,
    concurrency: { max: s.maxConcurrent ?? null, queueTimeoutMs: s.queueTimeoutMs },
    websocket: s.websocket,
    wsMaxMessageBytes: s.wsMaxMessageBytes,
    wsIdleTimeoutMs: s.wsIdleTimeoutMs,
    maxTunnels: s.maxTunnels ?? null,
    cache: s.cache === undefined ? null : { ...s.cache },
    definition: s
  }
}

/**
 * Problems of one definition that the schema alone cannot see (each prefixed with `where`).
 * `jwtEnabled` false: a service that accepts only JWTs could never be called.
 */
export function definitionProblems (s: ServiceDefinition, retry: RetryConfig, where: string, jwtEnabled = true): string[] {
  const problems: string[] = []
  if (!jwtEnabled && s.authMethods?.length === 1 && s.authMethods[0] === 'jwt') problems.push(`${where}authMethods: ${JWT_OFF}`)
  const prefix = normalPrefix(s.prefix)
  const taken = gatewayPathTaken(prefix)
  if (taken !== undefined) problems.push(`${where}prefix: service "${s.name}" uses "${prefix}", which is the gateway's own ${taken}`)
  const merged = { ...retry, ...s.retry }
  if (merged.maxDelayMs < merged.initialDelayMs) problems.push(`${where}retry.maxDelayMs: must be at least initialDelayMs`)
  return problems
}

/**
 * Re-reads ROUTES_FILE (SIGHUP in `file` mode) with the same rules as at start: the services, or
 * every problem found (the caller keeps the running table then).
 */
export function reloadRoutesFile (config: Config): { services: ServiceConfig[], problems: string[] } {
  if (config.routesFile === null) return { services: config.services, problems: [] }
  const problems: string[] = []
  const services = readRoutesFile(config.routesFile, config.retry, config.upstreamTimeoutMs, problems)
  // Issuers are read at start only; a service that needs them is checked against those.
  if (config.jwt.issuers.length === 0) {
    services.forEach((s, i) => { for (const p of definitionProblems(s.definition, config.retry, `${i}.`, false)) if (p.includes('authMethods')) problems.push(`ROUTES_FILE: ${p}`) })
  }
  return { services: problems.length > 0 ? [] : services, problems }
}

/**
 * Reads and validates a routes file (JSON by extension, else YAML) with the start-up rules; every
 * problem is pushed to `problems` as a `ROUTES_FILE: …` line. `api-gateway services apply` reads
 * its file with this too (docs/cli.md).
 */
export function readRoutesFile (file: string, retry: RetryConfig, timeoutMs: number, problems: string[], issuers: IssuerDefinition[] = []): ServiceConfig[] {
  let raw: unknown
  try {
    const text = readFileSync(file, 'utf8')
    raw = extname(file) === '.json' ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    problems.push(`ROUTES_FILE: cannot read ${file}: ${(err as Error).message.split('\n')[0]}`)
    return []
  }
  // Parsed by its shape: the union of both shapes reports a field of the wrong type (a string for
  // a number) only as "Invalid input" at the root, naming neither the service nor the field.
  const [list, object] = RoutesFileSchema.options
  const parsed = Array.isArray(raw) ? list.safeParse(raw) : object.safeParse(raw)
  if (!parsed.success) {
    for (const i of parsed.error.issues) problems.push(`ROUTES_FILE: ${i.path.join('.') || '(root)'}: ${i.message}`)
    return []
  }
  const entries = Array.isArray(parsed.data) ? parsed.data : parsed.data.services
  if (!Array.isArray(parsed.data)) issuers.push(...(parsed.data.issuers ?? []))
  const names = new Set<string>()
  const prefixes = new Set<string>()
  const services = entries.map((s, i): ServiceConfig => {
    const prefix = normalPrefix(s.prefix)
    for (const p of definitionProblems(s, retry, `${i}.`)) problems.push(`ROUTES_FILE: ${p}`)
    if (names.has(s.name)) problems.push(`ROUTES_FILE: ${i}.name: duplicate service name "${s.name}"`)
    if (prefixes.has(prefix)) problems.push(`ROUTES_FILE: ${i}.prefix: duplicate prefix "${prefix}"`)
    names.add(s.name)
    prefixes.add(prefix)
    return serviceFromDefinition(s, retry, timeoutMs)
  })
  if (services.length === 0) problems.push('ROUTES_FILE: declares no services')
  return services
}

function parseTrustProxy (value: string, problems: string[]): boolean | number | string[] {
  const v = value.toLowerCase()
  if (v === 'false') return false
  if (v === 'true') return true
  if (/^\d+$/.test(v)) return Number(v)
  const list = value.split(',').map((s) => s.trim()).filter(Boolean)
  const bad = list.filter((s) => !isAddressOrCidr(s))
  if (bad.length > 0) problems.push(`TRUST_PROXY: must be false, true, a hop count or a list of IP addresses or CIDRs (prefix 0-32 for IPv4, 0-128 for IPv6; bad: ${bad.join(', ')})`)
  return list
}

/** An IPv4 or IPv6 address, optionally with a prefix length in range (0-32 / 0-128). */
function isAddressOrCidr (value: string): boolean {
  const slash = value.indexOf('/')
  const family = isIP(slash === -1 ? value : value.slice(0, slash))
  if (family === 0) return false
  if (slash === -1) return true
  const bits = value.slice(slash + 1)
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
}

function parseCorsOrigins (value: string, problems: string[]): '*' | string[] {
  if (value === '*') return '*'
  const list = value.split(',').map((s) => s.trim()).filter(Boolean)
  const bad = list.filter((o) => !isHttpUrl(o) || new URL(o).origin !== o)
  if (bad.length > 0) problems.push(`CORS_ORIGINS: must be * or a list of origins like https://app.example.com (bad: ${bad.join(', ')})`)
  return list
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/** The lines start-up writes to stderr for a ConfigError; `api-gateway check` writes the same (docs/cli.md). */
export function configErrorLines (err: ConfigError): string[] {
  return err.problems.map((line) => `config error: ${line}`)
}

/** Where the `api-gateway` command finds the admin API and how it logs in (docs/cli.md). */
export interface AdminClientConfig {
  /** The admin API's origin (no trailing slash), e.g. http://127.0.0.1:8081. */
  url: string
  username: string
  /** Empty when unset: requests then go without credentials (ADMIN_AUTH_ENABLED=false). */
  password: string
}

/**
 * The admin client's settings from the environment and `.env`: GATEWAY_ADMIN_URL, else the local
 * gateway (ADMIN_HOST:ADMIN_PORT when ADMIN_PORT is set, else HOST:PORT; 127.0.0.1 for a host that
 * means every interface); ADMIN_USERNAME/ADMIN_PASSWORD as the
 * gateway reads them. Never from a command line, so a password does not end up in shell history.
 */
export function loadAdminClientConfig (source: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): AdminClientConfig {
  const merged = mergedEnvironment(source, options)
  const problems: string[] = []
  const explicit = (merged.GATEWAY_ADMIN_URL ?? '').trim()
  let url = explicit
  if (explicit !== '') {
    if (!isHttpUrl(explicit)) problems.push('GATEWAY_ADMIN_URL: must be an http:// or https:// URL')
    else if (/^[a-z]+:\/\/[^/]*@/i.test(explicit)) problems.push('GATEWAY_ADMIN_URL: must not carry credentials (set ADMIN_USERNAME and ADMIN_PASSWORD)')
  } else {
    const port = EnvSchema.shape.ADMIN_PORT.safeParse(merged.ADMIN_PORT)
    const fallback = EnvSchema.shape.PORT.safeParse(merged.PORT)
    if (!port.success) problems.push(`ADMIN_PORT: ${port.error.issues[0].message}`)
    if (!fallback.success) problems.push(`PORT: ${fallback.error.issues[0].message}`)
    if (port.success && fallback.success) {
      // The address the gateway binds, unless it binds every interface: then loopback reaches it.
      const bound = (port.data !== undefined ? merged.ADMIN_HOST : merged.HOST)?.trim() ?? ''
      const host = ['', '0.0.0.0', '::'].includes(bound) ? '127.0.0.1' : bound
      url = `http://${isIP(host) === 6 ? `[${host}]` : host}:${port.data ?? fallback.data}`
    }
  }
  const username = EnvSchema.shape.ADMIN_USERNAME.safeParse(merged.ADMIN_USERNAME)
  if (problems.length > 0) throw new ConfigError(problems)
  return {
    url: url.replace(/\/+$/, ''),
    username: username.success ? username.data : 'admin',
    password: merged.ADMIN_PASSWORD ?? ''
  }
}
