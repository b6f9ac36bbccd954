// CORS per CORS_ORIGINS (SPEC §12). Registered before any auth hook so preflights are answered
// by the gateway without a key.
import cors from '@fastify/cors'
import fp from 'fastify-plugin'

export default fp(async function corsPlugin (fastify) {
  const origins = fastify.config.corsOrigins
  await fastify.register(cors, {
    origin: origins === '*' ? '*' : [...origins],
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    exposedHeaders: ['X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset',
      'RateLimit', 'RateLimit-Policy', 'Retry-After', 'X-Retry-Count'],
    maxAge: 600,
    // Browsers never send credentials to a wildcard origin anyway; keys travel in headers.
    credentials: origins !== '*',
    hook: 'onRequest'
  })
}, { name: 'cors', dependencies: ['request-context'] })
