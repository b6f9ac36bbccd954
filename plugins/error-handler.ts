// One error handler, one JSON envelope (docs/admin-api.md#api-keys): every gateway error answers
// {"status":"error","error":"<reason>","message":"<what to do>"}. Low-level messages (addresses,
// errnos, stacks) are logged, never sent.
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { endAndClose } from '../lib/end-and-close.js'
import { envelope, REASONS } from '../lib/errors.js'

/** Fastify's own client errors, rewritten as messages a caller can act on. */
const FASTIFY_MESSAGES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'The request body is larger than allowed',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'Unsupported Content-Type; send application/json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length does not match the body',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'The JSON body is empty',
  FST_ERR_CTP_INVALID_JSON_BODY: 'The body is not valid JSON',
  FST_ERR_CTP_INVALID_TYPE: 'Invalid Content-Type header',
  FST_ERR_CTP_EMPTY_TYPE: 'Missing Content-Type header',
  FST_ERR_BAD_URL: 'The URL is not valid',
  FST_ERR_ASYNC_CONSTRAINT: 'The request could not be routed',
  FST_ERR_INVALID_URL: 'The URL is not valid'
}

// A store outage is brief or it is an incident: either way a client may try again in a second.
// One place says so for every store (the key store on the proxy path and in the admin API, the
// rate limiter failing closed, the service store), so no route has to remember the header.
const STORE_DOWN = new Set(['GW_STORE_UNAVAILABLE', 'GW_RATE_LIMIT_UNAVAILABLE', 'GW_SERVICE_STORE_UNAVAILABLE'])

export function renderError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  // A stream that fails after the head was sent (client gone, upstream reset mid-body) cannot be
  // answered with an envelope: the socket is closed, and it is not the gateway's fault.
  if (reply.sent || reply.raw.headersSent) {
    request.log.info({ event: 'response_stream_error', code: error.code }, 'response stream ended early')
    return
  }
  let status = error.statusCode ?? 500
  if (status < 400 || status > 599) status = 500
  let message: string
  if (error.code?.startsWith('GW_')) message = error.message
  else if (error.validation !== undefined || error.code === 'FST_ERR_VALIDATION') message = error.message
  else if (status < 500) message = FASTIFY_MESSAGES[error.code] ?? (error.code === undefined ? 'Bad request' : error.message)
  else message = 'Internal gateway error; it has been logged'

  if (STORE_DOWN.has(error.code)) reply.header('retry-after', '1')
  if (status >= 500 && !error.code?.startsWith('GW_')) request.log.error({ err: error }, 'unhandled error')
  else request.log.debug({ code: error.code, status }, 'request rejected')
  reply.code(status).type('application/json; charset=utf-8').send(envelope(status, message))
}

/**
 * Errors Fastify's router raises before any hook runs (Fastify's `frameworkErrors`): a bad
 * percent-escape in the path, a path parameter over `maxParamLength`. Fastify's own answers echo
 * the URL and skip every hook; these get the envelope, the request id, a metric and the access-log
 * line like any other answer (docs/operations.md).
 */
export function routerError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH'
  const status = tooLong ? 414 : 400
  request.server.requestEnds.refusedByRouter(request, reply, status)
  request.log.debug({ code: error.code, status }, 'request rejected by the router')
  reply.code(status).header('x-request-id', request.id).type('application/json; charset=utf-8')
    .send(envelope(status, tooLong ? 'A path segment is too long' : 'The URL is not valid (malformed percent-encoding)'))
}

/** Node's parser errors, by code: what the client did wrong, as a status and a message. */
const PARSER_ERRORS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Too many or too large request headers'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request was not received in time'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Chunk extensions are too large']
}

/**
 * Requests Node's HTTP parser rejects never reach Fastify's hooks (smuggling attempts, bad
 * framing, oversize or slow headers): answer them with the same envelope, close the connection,
 * and log the parser's code, never the bytes (docs/reliability.md, BI-01, SC-09).
 */
export function clientErrorHandler (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return
  const [status, message] = PARSER_ERRORS[err.code ?? ''] ?? [400, 'The request is malformed']
  this.log.debug({ event: 'client_error', code: err.code, status }, 'request rejected by the HTTP parser')
  // As Node does: never write into a response already on the wire (it would corrupt it).
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent: boolean } })._httpMessage
  if (!socket.writable || inFlight?.headersSent === true) {
    socket.destroy()
    return
  }
  // A request in flight (a slow upload's 408) ends with this answer: its metrics and log line say so.
  if (inFlight != null) this.requestEnds.answeredOnSocket(socket, status)
  const body = JSON.stringify(envelope(status, message))
  endAndClose(socket, `HTTP/1.1 ${status} ${REASONS[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

/** CONNECT is never proxied: answer 405 instead of Node's silent close (docs/reliability.md, BI-26). */
export function refuseConnect (socket: Socket): void {
  const body = JSON.stringify(envelope(405, 'CONNECT is not supported'))
  endAndClose(socket, 'HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

export default fp(async function errorHandler (fastify) {
  fastify.setErrorHandler(function handle (error: FastifyError, request, reply) {
    renderError(error, request, reply)
  })
  fastify.setNotFoundHandler(function notFound (request, reply) {
    // TRACE would echo credentials back (OWASP API8); the proxy never routes it.
    if (request.method === 'TRACE') reply.code(405).send(envelope(405, 'TRACE is not supported'))
    else reply.code(404).send(envelope(404, 'No route or service matches this path; check the URL'))
  })
}, { name: 'error-handler', fastify: '5.x' })
