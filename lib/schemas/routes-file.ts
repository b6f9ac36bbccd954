// The ROUTES_FILE (JSON or YAML, docs/proxying.md): a list of services, or `{ services: [...] }`. Strict:
// an unknown field is an error naming its path. lib/config.ts adds the cross-checks and defaults
// that depend on the environment.
import { z } from 'zod'
import { backendUrl, httpUrl } from './url.js'
import { parseCidr } from '../ip-rules.js'
import { headerRuleProblems } from '../header-rules.js'

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

/** A service's response cache (docs/caching.md): present = GET/HEAD answers are cached. */
export const CacheSettings = z.strictObject({
  ttlSeconds: z.number().int().min(0).max(31_536_000).default(0)
    .describe('Freshness given to a response that states none (0: only explicitly fresh responses are stored)'),
  maxEntryBytes: z.number().int().min(1).max(256 * 1024 * 1024).default(1024 * 1024)
    .describe('Largest body stored; a larger response is relayed and not stored'),
  staleIfErrorSeconds: z.number().int().min(0).max(31_536_000).default(0)
    .describe('How long past its freshness an entry may answer instead of a backend error or an open breaker')
}).describe('Shared HTTP response cache for GET and HEAD (RFC 9111)')

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

/** Traffic policies of a service (docs/policies.md): who may call, and headers set or removed. */
const cidrList = z.array(z.string().refine((c) => parseCidr(c) !== null, {
  error: (i) => `"${String(i.input).slice(0, 64)}" is not an IPv4 or IPv6 address or CIDR (prefix 0-32 / 0-128)`
})).max(1000)

const HeaderRule = z.strictObject({
  set: z.record(z.string(), z.string()).optional().describe('Headers set (replacing any value), name: value'),
  remove: z.array(z.string()).max(100).optional().describe('Headers removed')
}).superRefine((rule, ctx) => {
  for (const p of headerRuleProblems(rule)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message })
})

const PolicyFields = {
  ipAllow: cidrList.optional().describe('Only client IPs in these CIDRs may call the service (after TRUST_PROXY)'),
  ipDeny: cidrList.optional().describe('Client IPs in these CIDRs are refused (403); deny wins over allow'),
  requestHeaders: HeaderRule.optional().describe('Headers set or removed on the way to the backend'),
  responseHeaders: HeaderRule.optional().describe('Headers set or removed on the way to the client')
}

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
  cache: CacheSettings.optional(),
  ...WebSocketFields,
  ...PolicyFields,
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
