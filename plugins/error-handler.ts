// One error handler, one JSON envelope (SPEC §5): every gateway error answers
// {"status":"error","error":"<reason>","message":"<what to do>"}. Low-level messages (addresses,
// errnos, stacks) are logged, never sent.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { envelope } from '../src/errors.js'

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

  if (status >= 500 && !error.code?.startsWith('GW_')) request.log.error({ err: error }, 'unhandled error')
  else request.log.debug({ code: error.code, status }, 'request rejected')
  reply.code(status).type('application/json; charset=utf-8').send(envelope(status, message))
}

export default fp(async function errorHandler (fastify) {
  fastify.setErrorHandler(function handle (error: FastifyError, request, reply) {
    renderError(error, request, reply)
  })
  fastify.setNotFoundHandler(function notFound (_request, reply) {
    reply.code(404).send(envelope(404, 'No route or service matches this path; check the URL'))
  })
}, { name: 'error-handler' })
