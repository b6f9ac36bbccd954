// The response cache while Redis (our own redis-server, on a free port) is down, frozen and back
// (docs/caching.md#when-redis-is-down): the cache steps aside, requests go to the backend, nothing
// fails; when Redis returns the cache is used again without a restart.
import t from 'tap'
import { until } from '../../support/basics.js'
import { ADMIN_PASSWORD } from '../../support/gateway-process.js'
import { admin } from '../../support/http.js'
import { startRedis } from '../../support/redis-server.js'
import { cachedGateway, scriptedBackend } from './gateway.js'

t.test('Redis killed, frozen, restarted: every request is answered, the cache returns with Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const backend = await scriptedBackend(t)
  const gw = await cachedGateway(t, backend.url, {}, { STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'gwcacheoutage:', ADMIN_PASSWORD })
  await gw.get('/c/o')
  t.equal((await gw.get('/c/o')).headers['cache-status'], 'gateway; hit')

  await redis.kill('SIGKILL')
  const down = await Promise.all(Array.from({ length: 20 }, async () => await gw.get('/c/o')))
  t.ok(down.every((r) => r.status === 200 && r.headers['cache-status'] === 'gateway; fwd=bypass'), 'answered by the backend, cache bypassed')
  t.equal(backend.hits, 21)
  const purge = await admin(gw.port, 'DELETE', '/admin/cache')
  t.equal(purge.status, 503, 'a purge that cannot reach the shared entries says so')
  t.equal(purge.json().status, 'error')

  await redis.restart()
  t.ok(await until(async () => (await gw.get('/c/back')).headers['cache-status'] === 'gateway; hit', 10_000, 100), 'cached again once Redis is back')

  // Frozen: the socket stays open and nothing answers; commands time out and the cache steps aside.
  redis.pause()
  t.teardown(() => { redis.resume() })
  const frozen = await Promise.all(Array.from({ length: 5 }, async () => await gw.get('/c/frozen')))
  t.ok(frozen.every((r) => r.status === 200), 'answered while Redis is frozen')
  redis.resume()
})
