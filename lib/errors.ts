// Every error the gateway itself answers with: one constructor per failure, each with a code, a
// status and a message that tells the caller what to do (docs/admin-api.md#api-keys envelope). No internal address,
// errno or stack ever reaches a client: the error handler renders only these fields.
import createError from '@fastify/error'

export interface GatewayErrorBody {
  status: 'error'
  error: string
  message: string
  request_id?: string
}

const E = (code: string, message: string, status: number) => createError(`GW_${code}`, message, status)

export const NotFound = E('NOT_FOUND', 'No route or service matches this path; check the URL', 404)
export const BadRequest = E('BAD_REQUEST', '%s', 400)
export const ValidationFailed = E('VALIDATION', '%s', 400)
export const PayloadTooLarge = E('PAYLOAD_TOO_LARGE', 'The request body is larger than the %s byte limit', 413)
export const HeadersTooLarge = E('HEADERS_TOO_LARGE', 'Too many or too large request headers', 431)
export const ExpectationFailed = E('EXPECTATION_FAILED', 'Only "Expect: 100-continue" is supported', 417)

export const MissingApiKey = E('API_KEY_REQUIRED', 'An API key is required: send it as X-API-Key or Authorization: Bearer', 401)
export const InvalidApiKey = E('INVALID_API_KEY', 'The API key is invalid, revoked or expired', 401)
export const AmbiguousCredentials = E('AMBIGUOUS_CREDENTIALS', 'Send one API key, in X-API-Key or Authorization: Bearer, not several different ones', 401)
export const ServiceForbidden = E('SERVICE_FORBIDDEN', 'This API key may not call this service', 403)
export const InvalidToken = E('INVALID_TOKEN', 'The bearer token is invalid: %s', 401)
export const TokenRequired = E('TOKEN_REQUIRED', 'A credential is required: send %s', 401)
export const ApiKeyNotAccepted = E('API_KEY_NOT_ACCEPTED', 'This service does not accept API keys: send a JWT as Authorization: Bearer', 401)
export const AmbiguousToken = E('AMBIGUOUS_TOKEN', 'Send one credential, an API key or a JWT, once: not both, not repeated', 401)
export const InsufficientScope = E('INSUFFICIENT_SCOPE', 'The token lacks a scope this service requires: %s', 403)
export const TokenKeysUnavailable = E('TOKEN_KEYS_UNAVAILABLE', 'The token issuer\'s keys could not be fetched yet; retry after the Retry-After delay', 503)
export const AdminUnauthorized = E('ADMIN_UNAUTHORIZED', 'Admin credentials are required (HTTP Basic auth)', 401)
export const AdminThrottled = E('ADMIN_THROTTLED', 'Too many failed admin logins from this address; retry later', 429)
export const RateLimited = E('RATE_LIMITED', 'Rate limit exceeded; retry after the Retry-After delay', 429)

export const StoreUnavailable = E('STORE_UNAVAILABLE', 'The key store is unavailable; retry shortly', 503)
export const Overloaded = E('OVERLOADED', 'The service has too many requests in progress; retry after the Retry-After delay', 503)
export const TunnelsFull = E('TUNNELS_FULL', 'Too many WebSocket tunnels are open; retry after the Retry-After delay', 503)
export const CircuitOpen = E('CIRCUIT_OPEN', 'The service is temporarily unavailable (circuit open); retry later', 503)
export const BadGateway = E('BAD_GATEWAY', 'The upstream service could not be reached or answered badly', 502)
export const GatewayTimeout = E('GATEWAY_TIMEOUT', 'The upstream service did not answer in time', 504)
export const Internal = E('INTERNAL', 'Internal gateway error; it has been logged', 500)

/** Short reason phrases for the envelope's `error` field. */
export const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  417: 'Expectation Failed',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

export function envelope (status: number, message: string, requestId?: string): GatewayErrorBody {
  const body: GatewayErrorBody = { status: 'error', error: REASONS[status] ?? 'Error', message }
  if (requestId !== undefined) body.request_id = requestId
  return body
}
export const BreakerNotFound = E('BREAKER_NOT_FOUND', 'No circuit breaker is named "%s"; GET /admin/circuit-breakers lists them', 404)
export const RateLimitUnavailable = E('RATE_LIMIT_UNAVAILABLE', 'Rate limiting is temporarily unavailable; retry shortly', 503)
export const ApiKeyNotFound = E('API_KEY_NOT_FOUND', 'No API key has id "%s"; GET /admin/apikeys lists them', 404)
export const AdminMethodNotAllowed = E('ADMIN_METHOD_NOT_ALLOWED', 'This method is not allowed on this admin path; allowed: %s (see the Allow header)', 405)
export const AdminPathNotFound = E('ADMIN_PATH_NOT_FOUND', 'No admin route has this path (admin paths have no trailing slash); GET /admin/openapi.json lists them', 404)
export const ServiceNotFound = E('SERVICE_NOT_FOUND', 'No service is named "%s"; GET /admin/services lists them', 404)
export const ServiceConflict = E('SERVICE_CONFLICT', '%s', 409)
export const ServicesReadOnly = E('SERVICES_READ_ONLY', 'Services come from ROUTES_FILE (SERVICES_SOURCE=file): edit the file and send SIGHUP, or run with SERVICES_SOURCE=store', 409)
export const ServiceStoreUnavailable = E('SERVICE_STORE_UNAVAILABLE', 'The service store is unavailable; retry shortly', 503)
// Traffic policies (docs/policies.md).
export const IpForbidden = E('IP_FORBIDDEN', 'Requests from this client address are not allowed for this service', 403)
export const QuotaExceeded = E('QUOTA_EXCEEDED', 'The API key has used its quota for this period; retry after the Retry-After delay', 429)
export const QuotaUnavailable = E('QUOTA_UNAVAILABLE', 'Quota accounting is temporarily unavailable; retry shortly', 503)
export const NoQuota = E('NO_QUOTA', 'The API key "%s" has no quota; set one with "quota" when creating a key', 404)
// The response cache (docs/caching.md).
export const CacheUnavailable = E('CACHE_UNAVAILABLE', 'The shared response cache (Redis) is unavailable; retry the purge shortly', 503)
