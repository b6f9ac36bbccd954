// Per-service IP rules (docs/policies.md#ip-rules): the first of a service's hooks, run by the
// proxy's admit before authentication, so a refused address costs no key lookup and no token.
// The client IP is `request.ip`, the one the rate limiter uses: the socket address unless
// TRUST_PROXY says which X-Forwarded-For hops to believe.
import type { onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import promClient from '@platformatic/prom-client'
import type { ServiceConfig } from '../lib/config.js'
import { IpForbidden } from '../lib/errors.js'
import { compileIpRules } from '../lib/ip-rules.js'

export interface IpRules {
  /** The service's hook, or null when it has no `ipAllow` / `ipDeny` (then nothing runs at all). */
  hookFor (service: ServiceConfig): onRequestHookHandler | null
}

declare module 'fastify' {
  interface FastifyInstance {
    ipRules: IpRules
  }
}

export default fp(async function ipRules (app) {
  const refused = new promClient.Counter({
    name: 'gateway_ip_refused_total',
    help: 'Requests refused (403) by a service\'s ipAllow / ipDeny rules',
    labelNames: ['service'],
    registers: [app.gatewayMetrics.registry]
  })
  function hookFor (service: ServiceConfig): onRequestHookHandler | null {
    const allowed = compileIpRules(service.definition.ipAllow, service.definition.ipDeny)
    if (allowed === null) return null
    const name = service.name
    return function ipRuleHook (request, _reply, done) {
      if (allowed(request.ip)) return done()
      refused.inc({ service: name })
      done(new IpForbidden())
    }
  }
  app.decorate('ipRules', { hookFor } satisfies IpRules)
}, { name: 'ip-rules', fastify: '5.x', dependencies: ['gateway-metrics'] })
