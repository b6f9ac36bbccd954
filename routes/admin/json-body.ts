// The admin scope's JSON body parser: Fastify's own (the app's prototype-poisoning rules), except
// that an empty body is no body. Many clients send `Content-Type: application/json` with an action
// POST that has nothing to say (revoke a key, reset breakers); a route that needs a body still
// refuses an empty one through its schema (400).
import type { FastifyBodyParser, FastifyInstance, FastifyRequest } from 'fastify'

type Done = (err: Error | null, body?: unknown) => void

export function jsonOrNothing (fastify: FastifyInstance): FastifyBodyParser<string> {
  const { onProtoPoisoning, onConstructorPoisoning } = fastify.initialConfig
  // Fastify's default parser is the callback form (request, body, done).
  const json = fastify.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'error') as
    (request: FastifyRequest, body: string, done: Done) => void
  return (request, body, done) => {
    if (body === '') done(null, undefined)
    else json(request, body, done)
  }
}
