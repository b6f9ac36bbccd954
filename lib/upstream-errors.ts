// Error codes of a failed upstream connection, shared by the HTTP proxy and the WebSocket dialer so
// both judge a backend alike (docs/proxying.md#retries-and-circuit-breakers).

/** The backend itself could not be reached: passive health marks it down. */
export const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'
])

/** The request never reached the backend's application: safe to send again. */
export const CONNECTION_ERRORS: ReadonlySet<string> = new Set([
  ...CONNECT_FAILURES, 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'
])
