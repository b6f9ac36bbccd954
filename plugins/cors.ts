// CORS per CORS_ORIGINS (docs/operations.md). Registered before any auth hook so preflights are answered
// by the gateway without a key.
import cors, { type FastifyCorsOptions } from '@fastify/cors'
import fp from 'fastify-plugin'

export default fp(async function corsPlugin (fastify) {
  const origins = fastify.config.corsOrigins
  const options: FastifyCorsOptions = {
    origin: origins === '*' ? '*' : [...origins],
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    exposedHeaders: ['X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset',
      'RateLimit', 'RateLimit-Policy', 'Retry-After', 'X-Retry-Count'],
    maxAge: 600,
    // Browsers never send credentials to a wildcard origin anyway; keys travel in headers.
    credentials: origins !== '*'
  }
  // Browsers send Origin on every cross-origin request; the rest of the traffic (servers, CLIs)
  // needs no CORS headers, and skipping them saves ~250 bytes per response. Responses still
  // carry `Vary: Origin` so a cache never serves one to the other.
  const off: FastifyCorsOptions = { origin: false }
  // @fastify/cors answers preflights in its onRequest hook, and also adds an `OPTIONS *` route that
  // would take the proxy's catch-all for OPTIONS: the route is moved out of the way, so a
  // non-preflight OPTIONS is proxied like any other method.
  fastify.addHook('onRoute', (route) => {
    if (route.method === 'OPTIONS' && route.url === '*') {
      route.url = '/__cors-preflight'
      route.path = route.url
    }
  })
  // A preflight is an OPTIONS with Origin *and* Access-Control-Request-Method (Fetch standard);
  // an OPTIONS without the latter is an ordinary cross-origin request: it gets the CORS headers
  // and goes on to its route (proxied, or the gateway's JSON 404), never @fastify/cors's
  // plain-text "400 Invalid Preflight Request".
  const notPreflight: FastifyCorsOptions = { ...options, preflight: false }
  await fastify.register(cors, {
    hook: 'onRequest',
    delegator: (req, cb) => cb(null, req.headers.origin === undefined
      ? off
      : req.method === 'OPTIONS' && req.headers['access-control-request-method'] === undefined ? notPreflight : options)
  })
}, { name: 'cors', fastify: '5.x', dependencies: ['config', 'request-context'] })
