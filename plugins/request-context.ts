// First hook of every request: the request id (docs/proxying.md), a framing guard for what Node's parser
// lets through (docs/reliability.md: BI-03, BI-07, BI-18, BI-21), and `Expect: 100-continue`
// handling.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { BadRequest, ExpectationFailed, HeadersTooLarge, PayloadTooLarge } from '../lib/errors.js'
import { MAX_HEADER_COUNT } from '../lib/http-headers.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/

/** Keeps a client's X-Request-Id when it is 1-128 characters of [A-Za-z0-9._-], else makes one. */
export function requestIdFor (req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The client asked for `100 Continue` and has not been sent it yet. */
    expectsContinue: boolean
  }
}

export default fp(async function requestContext (fastify) {
  fastify.decorateRequest('expectsContinue', false)

  // Callback-style hooks: they run on every request, and an async hook costs a promise each.
  const lifecycle = fastify.lifecycle
  fastify.addHook('onRequest', function guard (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
    reply.header('x-request-id', request.id)
    // Shutting down (SHUTDOWN_DELAY_MS): still served, but keep-alive clients move to a new
    // connection (another instance) before the drain closes this one under them.
    if (lifecycle.draining) reply.header('connection', 'close')
    const raw = request.raw
    const rawHeaders = raw.rawHeaders
    if (rawHeaders.length > MAX_HEADER_COUNT * 2) {
      reply.header('connection', 'close')
      return done(new HeadersTooLarge())
    }
    let te = 0
    let host = 0
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]
      // Only names that could matter are lowercased: most requests skip every branch.
      const c = name.charCodeAt(0) | 0x20
      if (c === 0x74 /* t */ && name.length === 17 && name.toLowerCase() === 'transfer-encoding') te++
      else if (c === 0x68 /* h */ && name.length === 4 && name.toLowerCase() === 'host') host++
      else if (name.includes('_')) {
        // nginx's underscores_in_headers off: `X_Consumer_Id` must not reach a backend that folds
        // `_` into `-` and takes it for the gateway's own header (BI-18).
        delete raw.headers[name.toLowerCase()]
      }
    }
    // Two Transfer-Encoding lines, TE on HTTP/1.0, or any coding but a lone `chunked` are
    // ambiguous framing for the next hop (RFC 9112 §6.1, BI-03); two Host lines or a Host that is
    // not host[:port] are invalid (RFC 9112 §3.2).
    if (te > 0 && (te > 1 || raw.httpVersion === '1.0' || String(raw.headers['transfer-encoding']).trim().toLowerCase() !== 'chunked')) {
      reply.header('connection', 'close')
      return done(new BadRequest('Ambiguous message framing (Transfer-Encoding)'))
    }
    // `OPTIONS *` asks about the server itself; nothing behind the gateway should answer it.
    if (host > 1 || !validHost(raw.headers.host) || raw.url === '*') {
      reply.header('connection', 'close')
      return done(new BadRequest(raw.url === '*' ? 'The asterisk request target is not supported' : 'Invalid Host header'))
    }

    const expect = raw.headers.expect
    if (expect !== undefined) {
      // HTTP/1.0 expectations are ignored (RFC 9110 §10.1.1); anything but 100-continue is 417.
      if (raw.httpVersion === '1.0') delete raw.headers.expect
      else if (expect.toLowerCase() !== '100-continue') return done(new ExpectationFailed())
      else {
        request.expectsContinue = true
        delete raw.headers.expect
      }
    }
    done()
  })

  // After authentication and rate limiting (onRequest) and before the body is read, on every
  // route: a declared length over the route's body limit (BODY_LIMIT_BYTES, the admin scope's
  // 64 KiB) is refused here, the one place for it, with 413 and a close — before a proxied request
  // takes a concurrency slot or a breaker permit, and instead of inviting the upload with 100
  // (RFC 9110 §10.1.1). A body that turns out longer than it was declared, or a chunked one, is
  // counted on the way (BoundedBody, Fastify's parsers). Then only a request that will be served is
  // told to send its body; a rejected one gets its final status without a 100 and the connection
  // is closed, since the body was never read.
  fastify.addHook('preParsing', function bodyGate (request, reply, payload, done) {
    const declared = request.headers['content-length']
    if (declared !== undefined) {
      const limit = request.routeOptions.bodyLimit
      if (limit !== undefined && Number(declared) > limit) {
        reply.header('connection', 'close')
        done(new PayloadTooLarge(String(limit)))
        return
      }
    }
    if (request.expectsContinue) {
      request.expectsContinue = false
      reply.raw.writeContinue()
    }
    done(null, payload)
  })
  fastify.addHook('onSend', function closeUnreadBody (request, reply, payload, done) {
    if (request.expectsContinue) reply.header('connection', 'close')
    done(null, payload)
  })
}, { name: 'request-context', fastify: '5.x', dependencies: ['lifecycle'] })

const HOST = /^(?:\[([0-9A-Fa-f:.]+)\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/

/** The last Host found valid: nearly every request repeats its predecessor's, so it skips the regex. */
let lastValidHost = ''

/** `host[:port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a name or an IP literal, a port of 1-65535. */
export function validHost (host: string | undefined): boolean {
  // Node already requires a Host on HTTP/1.1 (requireHostHeader); HTTP/1.0 may omit it.
  if (host === undefined || host === lastValidHost) return true
  if (!hostSyntax(host)) return false
  lastValidHost = host
  return true
}

function hostSyntax (host: string): boolean {
  const m = HOST.exec(host)
  if (m === null) return false
  if (m[1] !== undefined && isIP(m[1]) !== 6) return false
  if (m[2] !== undefined) {
    const port = Number(m[2])
    if (port < 1 || port > 65535) return false
  }
  return true
}
