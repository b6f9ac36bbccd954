// The breaker admin endpoints (docs/proxying.md#retries-and-circuit-breakers, seed JSON), without the admin scope's Basic auth.
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import t, { type Test } from 'tap'
import errorHandler from '../../../plugins/error-handler.js'
import circuitBreakers, { type BreakerPermit, type ServiceBreaker } from '../../../plugins/circuit-breakers.js'
import circuitBreakerRoutes from '../../../routes/admin/circuit-breakers.js'
import { loadConfig } from '../../../lib/config.js'
import configPlugin from '../../../plugins/config.js'

async function build (t: Test) {
  const config = loadConfig({ ADMIN_AUTH_ENABLED: 'false', CB_MAX_FAILURES: '2', CB_RESET_TIMEOUT_SECONDS: '30' }, { dotenv: false })
  const app = Fastify()
  await app.register(configPlugin, { config })
  await app.register(fp(async (f) => {
    f.decorate('gatewayMetrics', { breakerState () {}, breakerTrip () {} } as never)
  }, { name: 'gateway-metrics' }))
  await app.register(circuitBreakers)
  await app.register(errorHandler)
  await app.register(async (admin) => { await admin.register(circuitBreakerRoutes) }, { prefix: '/admin' })
  await app.ready()
  t.teardown(() => app.close())
  const trip = (name: string) => {
    const b = app.breakers.get(name) as ServiceBreaker
    for (let i = 0; i < 2; i++) (b.acquire() as BreakerPermit).failure()
  }
  return { app, trip }
}

t.test('GET /admin/circuit-breakers lists every breaker in the seed shape', async (t) => {
  const { app, trip } = await build(t)
  trip('user-service')
  const res = await app.inject({ method: 'GET', url: '/admin/circuit-breakers' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const body = res.json()
  t.equal(body.status, 'success')
  t.same(body.data[0], { name: 'auth-service', state: 'closed', failures: 0, consecutive_successes: 0 })
  t.same(Object.keys(body.data[1]).sort(), ['consecutive_successes', 'failures', 'last_failure', 'name', 'state'])
  t.match(body.data[1], { name: 'user-service', state: 'open', failures: 2, consecutive_successes: 0 })
  t.ok(!Number.isNaN(Date.parse(body.data[1].last_failure)))
})

t.test('POST /admin/circuit-breakers/{name}/reset closes that breaker only', async (t) => {
  const { app, trip } = await build(t)
  trip('user-service')
  trip('auth-service')
  const res = await app.inject({ method: 'POST', url: '/admin/circuit-breakers/user-service/reset' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'success', message: 'Circuit breaker user-service reset' })
  t.equal(app.breakers.get('user-service')?.state, 'closed')
  t.equal(app.breakers.get('auth-service')?.state, 'open')
})

t.test('POST /admin/circuit-breakers/reset closes all breakers', async (t) => {
  const { app, trip } = await build(t)
  trip('user-service')
  trip('auth-service')
  const res = await app.inject({ method: 'POST', url: '/admin/circuit-breakers/reset' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'success', message: 'All circuit breakers reset' })
  t.same(app.breakers.list().map((b) => b.state), ['closed', 'closed'])
})

t.test('resetting an unknown breaker is a 404 naming it', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ method: 'POST', url: '/admin/circuit-breakers/payments/reset' })
  t.equal(res.statusCode, 404)
  const body = res.json()
  t.match(body, { status: 'error', error: 'Not Found' })
  t.match(body.message, /payments/)
})

t.test('a malformed breaker name is a 400', async (t) => {
  const { app } = await build(t)
  for (const name of ['a'.repeat(65), 'bad%20name', 'semi%3Bcolon', '%3Cscript%3E']) {
    const res = await app.inject({ method: 'POST', url: `/admin/circuit-breakers/${name}/reset` })
    t.equal(res.statusCode, 400, name)
    t.match(res.json(), { status: 'error', error: 'Bad Request', message: /name/ })
  }
})
