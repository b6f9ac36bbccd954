// Per-service header transforms (docs/policies.md#header-transforms): `requestHeaders` (toward the
// backend) and `responseHeaders` (toward the client), each `{ set: {name: value}, remove: [names] }`.
// Validated here once (the routes-file schema calls `headerRuleProblems`) and compiled once per
// service into plain lowercase lists the header policy (lib/http-headers.ts) reads on the hot path.
//
// Names the gateway owns can be neither set nor removed: framing and hop-by-hop fields, Host, the
// forwarding and identity fields it writes itself, the request id, trace context, and the
// rate-limit and quota fields (a transform must not be able to forge or hide them).

/** RFC 9110 §5.6.2 token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** Visible ASCII, space and tab: no CR, LF or NUL can split a header. */
const FIELD_VALUE = /^[\t\x20-\x7e]*$/
export const MAX_HEADER_VALUE = 4096

const PROTECTED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'http2-settings', 'content-length', 'expect', 'host',
  'forwarded', 'x-real-ip', 'x-request-id', 'traceparent', 'tracestate',
  'ratelimit', 'ratelimit-policy', 'retry-after'
])
const PROTECTED_PREFIXES = ['x-forwarded-', 'x-consumer-', 'x-ratelimit-', 'x-quota-']

/** Why the gateway keeps `name` to itself, or null when a transform may touch it. */
export function protectedHeader (name: string): string | null {
  const n = name.toLowerCase()
  if (PROTECTED.has(n)) return 'is managed by the gateway (hop-by-hop, framing, forwarding, tracing or rate-limit field)'
  for (const p of PROTECTED_PREFIXES) if (n.startsWith(p)) return `is managed by the gateway (${p}* fields)`
  return null
}

export interface HeaderRuleInput {
  set?: Record<string, string>
  remove?: string[]
}

/** Problems of one transform, each `<path>: message` naming the header; empty when valid. */
export function headerRuleProblems (rule: HeaderRuleInput): Array<{ path: Array<string | number>, message: string }> {
  const problems: Array<{ path: Array<string | number>, message: string }> = []
  const seen = new Map<string, string>()
  const check = (name: string, path: Array<string | number>): void => {
    if (!TOKEN.test(name)) {
      problems.push({ path, message: `header name "${name.slice(0, 64)}" is not a valid HTTP token` })
      return
    }
    const why = protectedHeader(name)
    if (why !== null) problems.push({ path, message: `header "${name}" cannot be set or removed: it ${why}` })
    const lower = name.toLowerCase()
    const before = seen.get(lower)
    if (before !== undefined) problems.push({ path, message: `header "${name}" is already named (as "${before}")` })
    seen.set(lower, name)
  }
  for (const [name, value] of Object.entries(rule.set ?? {})) {
    check(name, ['set', name])
    if (!FIELD_VALUE.test(value)) problems.push({ path: ['set', name], message: `value of header "${name}" may hold only visible ASCII, spaces and tabs (no CR, LF or NUL)` })
    else if (value.length > MAX_HEADER_VALUE) problems.push({ path: ['set', name], message: `value of header "${name}" must be at most ${MAX_HEADER_VALUE} characters` })
  }
  for (const [i, name] of (rule.remove ?? []).entries()) check(name, ['remove', i])
  return problems
}

/** A transform ready for the hot path: lowercase names; `skip` = every name the backend's value is dropped for. */
export interface HeaderTransform {
  readonly set: ReadonlyArray<readonly [string, string]>
  readonly skip: ReadonlySet<string>
}

/** Null when the rule does nothing, so the header policy does no extra work. */
export function compileHeaderRule (rule: HeaderRuleInput | undefined): HeaderTransform | null {
  if (rule === undefined) return null
  const set = Object.entries(rule.set ?? {}).map(([n, v]) => [n.toLowerCase(), v] as const)
  const remove = (rule.remove ?? []).map((n) => n.toLowerCase())
  if (set.length === 0 && remove.length === 0) return null
  return Object.freeze({ set: Object.freeze(set), skip: new Set([...remove, ...set.map(([n]) => n)]) })
}
