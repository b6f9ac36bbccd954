// The gateway's environment variables (docs/configuration.md): one zod schema, each variable with its default.
// An unset or empty variable means "use the default"; lib/config.ts cross-checks and shapes them.
import { z } from 'zod'
import { backendUrl, httpUrl } from './url.js'
import { OtelEnvShape } from './otel-env.js'

const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v)
const env = <T extends z.ZodType>(schema: T) => z.preprocess(blankToUndefined, schema)
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(min).max(max))
const num = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.string().trim().regex(/^\d+(\.\d+)?$/, 'must be a number').transform(Number).pipe(z.number().min(min).max(max))
const bool = () => z.stringbool({ truthy: ['true', '1', 'yes', 'on'], falsy: ['false', '0', 'no', 'off'] })
/** The longest delay Node's timers accept (2^31-1 ms, about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1
const hostPort = z.string().trim().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port')

export const EnvSchema = z.object({
  HOST: env(z.string().trim().default('0.0.0.0')),
  PORT: env(int(0, 65535).default(8081)),
  STORAGE: env(z.enum(['embedded', 'redis']).optional()),
  REDIS_URL: env(z.string().trim().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional()),
  REDIS_HOST: env(z.string().trim().optional()),
  REDIS_PORT: env(int(1, 65535).default(6379)),
  REDIS_PASSWORD: env(z.string().optional()),
  REDIS_DB: env(int(0, 15).default(0)),
  REDIS_CLUSTER_NODES: env(z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(hostPort).min(1, 'must list at least one host:port')).optional()),
  REDIS_KEY_PREFIX: env(z.string().regex(/^[A-Za-z0-9:_.-]{1,32}$/, 'must be 1-32 characters of A-Z a-z 0-9 : _ . -').default('gw:')),
  DATA_DIR: env(z.string().default('./data')),
  ROUTES_FILE: env(z.string().optional()),
  SERVICES_SOURCE: env(z.enum(['file', 'store']).optional()),
  TRUST_PROXY: env(z.string().trim().default('false')),
  CORS_ORIGINS: env(z.string().trim().default('*')),
  API_KEY_REQUIRED: env(bool().default(false)),
  UPSTREAM_TIMEOUT_MS: env(int(1, 3_600_000).default(30000)),
  UPSTREAM_IDLE_TIMEOUT_MS: env(int(1, 86_400_000).default(300_000)),
  HEALTH_CHECK_INTERVAL_SECONDS: env(num(0.05, 86_400).default(25)),
  HEALTH_CHECK_TIMEOUT_SECONDS: env(num(0.05, 3600).default(4)),
  SHUTDOWN_TIMEOUT_MS: env(int(0, 3_600_000).default(25000)),
  SHUTDOWN_DELAY_MS: env(int(0, 3_600_000).default(0)),
  RATE_LIMIT_RPM: env(int(1).default(60)),
  RATE_LIMIT_BURST: env(int(1).default(10)),
  RATE_LIMIT_FAIL_MODE: env(z.enum(['open', 'closed']).default('open')),
  RATE_LIMIT_STORE_TIMEOUT_MS: env(int(1, 10_000).default(100)),
  RATE_LIMIT_LEASES: env(bool().default(true)),
  CB_MAX_FAILURES: env(int(1).default(5)),
  CB_RESET_TIMEOUT_SECONDS: env(num(0.01, 86_400).default(30)),
  CB_HALF_OPEN_MAX_REQUESTS: env(int(1).default(3)),
  CB_SUCCESS_THRESHOLD: env(int(1).default(2)),
  RETRY_MAX_RETRIES: env(int(0, 20).default(3)),
  RETRY_INITIAL_DELAY_MS: env(int(0, 600_000).default(100)),
  RETRY_MAX_DELAY_MS: env(int(0, 600_000).default(5000)),
  RETRY_MULTIPLIER: env(num(1, 100).default(2)),
  RETRY_JITTER_FACTOR: env(num(0, 1).default(0.1)),
  ADMIN_AUTH_ENABLED: env(bool().default(true)),
  ADMIN_USERNAME: env(z.string().default('admin')),
  ADMIN_PASSWORD: env(z.string().optional()),
  AUTH_SERVICE_URL: env(backendUrl().default('http://localhost:8080')),
  USER_SERVICE_URL: env(backendUrl().default('http://localhost:8082')),
  LOG_LEVEL: env(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  LOG_PROBES: env(bool().default(false)),
  WORKERS: env(int(1, 64).default(1)),
  BODY_LIMIT_BYTES: env(int(1, 1024 ** 3).default(1024 * 1024)),
  HEADERS_TIMEOUT_MS: env(int(100, 600_000).default(10_000)),
  REQUEST_TIMEOUT_MS: env(int(100, 3_600_000).default(300_000)),
  KEEP_ALIVE_TIMEOUT_MS: env(int(100, 600_000).default(5000)),
  // Longest wait for a client to take more of a relayed response; a timer holds at most 2^31-1 ms.
  CLIENT_SEND_TIMEOUT_MS: env(int(1, MAX_TIMER_MS).default(60_000)),
  MAX_CONNECTIONS: env(int(1, 1_000_000).default(10_000)),
  MAX_CONCURRENT_REQUESTS: env(int(1, 1_000_000).optional()),
  MAX_WEBSOCKET_TUNNELS: env(int(1, 1_000_000).optional()),
  CACHE_MAX_BYTES: env(int(1024, 64 * 1024 ** 3).default(64 * 1024 * 1024)),
  ADMIN_HOST: env(z.string().trim().optional()),
  ADMIN_PORT: env(int(0, 65535).optional()),
  // JWT consumers (docs/jwt.md): off unless JWT_ISSUER (or `issuers` in ROUTES_FILE) is set.
  JWT_ISSUER: env(z.string().trim().max(2048).optional()),
  JWT_JWKS_URL: env(httpUrl().optional()),
  JWT_AUDIENCE: env(z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean)).optional()),
  JWT_ALGORITHMS: env(z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(z.string()).min(1, 'must list at least one algorithm')).default(['RS256', 'PS256', 'ES256', 'EdDSA'])),
  JWT_CLOCK_TOLERANCE_SECONDS: env(int(0, 600).default(30)),
  JWT_CONSUMER_CLAIM: env(z.string().trim().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be a claim name (1-64 characters of A-Z a-z 0-9 _ . : -)').default('sub')),
  JWT_FORWARD_TOKEN: env(bool().default(true)),
  // Tracing: only the standard OpenTelemetry variables (docs/tracing.md).
  ...OtelEnvShape
})

export type Env = z.infer<typeof EnvSchema>

/** Every variable the gateway reads; the docker-compose test checks against this list. */
export const KNOWN_VARIABLES: readonly string[] = Object.keys(EnvSchema.shape)
