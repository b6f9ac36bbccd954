// The ROUTES_FILE (JSON or YAML, docs/proxying.md): a list of services, or `{ services: [...] }`. Strict:
// an unknown field is an error naming its path. lib/config.ts adds the cross-checks and defaults
// that depend on the environment.
import { z } from 'zod'
import { backendUrl, httpUrl } from './url.js'

const prefixSchema = z.string().regex(/^\/[A-Za-z0-9._~\-/]*$/, 'must start with / and use only URL path characters')
  .refine((p) => !p.includes('//') && !/(^|\/)\.\.?(\/|$)/.test(p), 'must not contain empty, . or .. segments')

// Every duration ends in a setTimeout, which turns anything over 2^31-1 ms into 1 ms (every
// request a 504): each is bounded well below that, like its environment variable
// (lib/schemas/env.ts). queueTimeoutMs and wsIdleTimeoutMs carry their own bounds below.
const MAX_TIMEOUT_MS = 3_600_000
const MAX_RETRY_DELAY_MS = 600_000
const ms = (min: number, max: number, what: string) =>
  z.number().int().min(min).max(max, `must be at most ${max} ms (${what})`)

/** WebSocket settings of a service that sets none: no tunnels, 1 MiB messages, 60 s of silence. */
const WS_DEFAULTS = { websocket: false, wsMaxMessageBytes: 1024 * 1024, wsIdleTimeoutMs: 60_000 } as const

/** A service's WebSocket tunnel settings (docs/proxying.md#websockets): off unless `websocket: true`. */
const WebSocketFields = {
  websocket: z.boolean().default(false),
  wsMaxMessageBytes: z.number().int().min(1).max(1024 ** 3).default(WS_DEFAULTS.wsMaxMessageBytes),
  wsIdleTimeoutMs: z.number().int().min(100).max(86_400_000).default(WS_DEFAULTS.wsIdleTimeoutMs),
  /** Tunnels open (or opening) at once; absent: no bound but MAX_WEBSOCKET_TUNNELS. */
  maxTunnels: z.number().int().min(1).max(1_000_000).optional()
}

/** RFC 6749 section 3.3 scope-token: printable ASCII but space, `"` and `\\`. */
const scopeToken = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'must be a scope token (printable ASCII, no space, " or \\)')

/** Which credentials a service accepts and the scopes a JWT must carry for it (docs/jwt.md). */
const AuthFields = {
  authMethods: z.array(z.enum(['apikey', 'jwt'])).min(1).max(2)
    .refine((m) => new Set(m).size === m.length, 'must not repeat a method').optional()
    .describe('Credentials this service accepts: apikey, jwt (default both)'),
  scopes: z.array(scopeToken).max(64).optional()
    .describe('Scopes a JWT must carry (scope or scp claim) to call this service; 403 insufficient_scope otherwise')
}

/** One more token issuer besides JWT_ISSUER (docs/jwt.md); unset fields take the JWT_* defaults. */
export const IssuerEntry = z.strictObject({
  issuer: z.string().trim().min(1).max(2048),
  jwksUrl: httpUrl().optional(),
  audiences: z.array(z.string().min(1)).min(1).optional(),
  algorithms: z.array(z.string()).min(1).optional()
})
export type IssuerDefinition = z.output<typeof IssuerEntry>

const RetryOverride = z.strictObject({
  maxRetries: z.number().int().min(0).max(20),
  initialDelayMs: ms(0, MAX_RETRY_DELAY_MS, '10 minutes'),
  maxDelayMs: ms(0, MAX_RETRY_DELAY_MS, '10 minutes'),
  multiplier: z.number().min(1),
  jitterFactor: z.number().min(0).max(1)
}).partial()

/** One service of the routes file; the admin API validates its bodies with this same schema. */
export const ServiceFileEntry = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -'),
  prefix: prefixSchema,
  backends: z.array(z.strictObject({
    url: backendUrl(),
    weight: z.number().int().min(1).max(1000).default(1)
  })).min(1),
  strategy: z.enum(['round-robin', 'weighted', 'random']).default('round-robin'),
  stripPrefix: z.boolean().default(false),
  timeoutMs: ms(1, MAX_TIMEOUT_MS, '1 hour').optional(),
  auth: z.enum(['optional', 'required', 'none']).default('optional'),
  rateLimit: z.union([z.literal(false), z.strictObject({ rpm: z.number().int().min(1), burst: z.number().int().min(1) })]).optional(),
  retry: RetryOverride.optional(),
  healthPath: z.string().regex(/^\/\S*$/, 'must start with /').default('/health'),
  maxConcurrent: z.number().int().min(1).optional(),
  queueTimeoutMs: z.number().int().min(0).max(600_000).default(0),
  ...WebSocketFields,
  ...AuthFields
})

/** A validated service definition (defaults applied), as the routes file and the store hold it. */
export type ServiceDefinition = z.output<typeof ServiceFileEntry>

export const RoutesFileSchema = z.union([
  z.array(ServiceFileEntry),
  z.strictObject({ services: z.array(ServiceFileEntry), issuers: z.array(IssuerEntry).optional() })
])

export type RoutesFile = z.infer<typeof RoutesFileSchema>
