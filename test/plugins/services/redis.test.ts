// The services plugin on Redis, in process (docs/admin-api.md#managing-services): two gateways sharing a Redis apply each
// other's changes; racing writes for one prefix end with one service, never two; with Redis down
// at start a gateway serves the seed services and takes the store's table once Redis is back.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, REDIS_URL, uniquePrefix } from '../../support/app.js'
import { until } from '../../support/basics.js'
import { startRedis } from '../../support/redis-server.js'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')
const put = (app: FastifyInstance, name: string, body: unknown) =>
  app.inject({ method: 'PUT', url: `/admin/services/${name}`, headers: { authorization: AUTH }, payload: body as object })
const def = (prefix: string) => ({ prefix, backends: [{ url: 'http://127.0.0.1:9' }] })

t.test('two gateways on one Redis apply each other\'s changes within 1 s', async (t) => {
  const env = { STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix() }
  const one = await build(t, env)
  const two = await build(t, env)
  t.equal((await put(one, 'orders', def('/api/orders'))).statusCode, 201)
  t.ok(await until(() => two.services.get('orders') !== null, 3000), 'created on one, applied on two (1 s promised, 3 s allowed on a busy machine)')
  t.equal(two.serviceTables.current.match('/api/orders/1')?.name, 'orders')
  t.equal(two.services.version, one.services.version)

  const del = await two.inject({ method: 'DELETE', url: '/admin/services/orders', headers: { authorization: AUTH } })
  t.equal(del.statusCode, 200)
  t.ok(await until(() => one.services.get('orders') === null, 3000), 'deleted on two, gone on one')
  t.equal(one.serviceTables.current.match('/api/orders/1'), null)
})

t.test('writes racing for one prefix on two gateways end with exactly one service', async (t) => {
  const env = { STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix() }
  const one = await build(t, env)
  const two = await build(t, env)
  const [a, b] = await Promise.all([put(one, 'first', def('/api/same')), put(two, 'second', def('/api/same'))])
  t.same([a.statusCode, b.statusCode].sort(), [201, 409], 'one created, the other refused on the newer table')
  t.ok(await until(() => one.services.version === two.services.version, 5000), 'both on the same version')
  const holders = (app: FastifyInstance) => app.services.list().filter((s) => s.definition.prefix === '/api/same').map((s) => s.name)
  t.same(holders(one), holders(two), 'both gateways agree')
  t.equal(holders(one).length, 1)
})

t.test('with Redis down at start the seed services serve; the store\'s table is taken once it is back', async (t) => {
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const env = { STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: uniquePrefix() }
  const first = await build(t, env)
  t.equal((await put(first, 'orders', def('/api/orders'))).statusCode, 201)
  const version = first.services.version
  await first.close()
  await redis.kill('SIGKILL')

  const app = await build(t, env)
  t.same(app.services.list().map((s) => s.name), ['auth-service', 'user-service'], 'the seed services')
  t.equal(app.services.version, 0)
  const refused = await put(app, 'more', def('/api/more'))
  t.equal(refused.statusCode, 503, 'admin writes need the store')
  t.equal(refused.json().status, 'error')

  await redis.restart()
  t.ok(await until(() => app.services.get('orders') !== null, 8000), 'the stored services once Redis answers')
  t.equal(app.services.version, version)
})
