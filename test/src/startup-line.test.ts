// The one start-up line (src/startup-line.ts): where, which store, how many services and backends,
// admin auth on or off, never a password.
import t from 'tap'
import { loadConfig } from '../../lib/config.js'
import { adminExposureWarning, describeStore, isLoopbackHost, redactRedisUrl, startupLine } from '../../src/startup-line.js'
import { ADMIN_PASSWORD, startGateway } from '../support/gateway-process.js'

const config = (env: Record<string, string>) => loadConfig({ ADMIN_PASSWORD: 'pw-never-printed', ...env }, { dotenv: false, cwd: '/srv/gw' })

t.test('a Redis URL is printed without its credentials', async (t) => {
  t.equal(redactRedisUrl('redis://:s3cret@cache.internal:6380/2'), 'redis://cache.internal:6380/2')
  t.equal(redactRedisUrl('rediss://user:s3cret@cache.internal:6380'), 'rediss://cache.internal:6380')
  t.equal(redactRedisUrl('not a url'), '(invalid URL)')
  t.equal(describeStore(config({ REDIS_URL: 'redis://:s3cret@cache:6379/1' })), 'redis (redis://cache:6379/1)')
  t.equal(describeStore(config({ REDIS_HOST: 'cache', REDIS_PASSWORD: 's3cret', REDIS_DB: '3' })), 'redis (redis://cache:6379/3)')
  t.equal(describeStore(config({ STORAGE: 'redis', REDIS_CLUSTER_NODES: 'a:7000,b:7001' })), 'redis cluster (seeds a:7000, b:7001)')
  t.equal(describeStore(config({ DATA_DIR: 'state' })), 'embedded (/srv/gw/state/gateway.db)')
})

t.test('the line counts services and backends and says whether admin auth is on', async (t) => {
  const on = startupLine(config({ HOST: '0.0.0.0' }), 'http://0.0.0.0:8081')
  t.same(on.facts, { event: 'gateway_started', address: 'http://0.0.0.0:8081', store: 'embedded (/srv/gw/data/gateway.db)', services: 2, backends: 2, admin_auth: true, admin_address: null })
  t.match(on.msg, /^gateway listening on http:\/\/0\.0\.0\.0:8081 \(all interfaces\); store embedded .*; 2 services, 2 backends; admin auth on \(user admin\)$/)
  const off = startupLine(config({ ADMIN_AUTH_ENABLED: 'false', HOST: '127.0.0.1' }), 'http://127.0.0.1:9000')
  t.match(off.msg, /^gateway listening on http:\/\/127\.0\.0\.1:9000; .*admin auth OFF$/)
  t.notMatch(JSON.stringify([on, off]), /pw-never-printed/)
  const apart = startupLine(config({}), 'http://0.0.0.0:8081', 'http://127.0.0.1:8001')
  t.equal(apart.facts.admin_address, 'http://127.0.0.1:8001')
  t.match(apart.msg, /; admin API and \/metrics only on http:\/\/127\.0\.0\.1:8001$/)
})

t.test('npm start prints one start-up line instead of one "Server listening" line per interface', async (t) => {
  const gw = await startGateway(t, { env: { LOG_LEVEL: 'info', HOST: '0.0.0.0', REDIS_PASSWORD: 'redis-secret-1' } })
  await gw.logsSettled()
  const started = gw.logs.filter((l) => l.event === 'gateway_started')
  t.equal(started.length, 1)
  t.match(started[0], {
    address: `http://0.0.0.0:${gw.port}`,
    store: `embedded (${gw.cwd}/data/gateway.db)`,
    services: 2,
    backends: 2,
    admin_auth: true,
    msg: /^gateway listening on http:\/\/0\.0\.0\.0:\d+ \(all interfaces\); store embedded/
  })
  t.equal(gw.logs.filter((l) => /Server listening/.test(String(l.msg))).length, 0)
  const exposed = gw.logs.filter((l) => l.event === 'admin_on_public_listener')
  t.equal(exposed.length, 1, 'one warning: the admin API is on the public listener')
  t.equal(exposed[0]?.level, 40)
  t.match(exposed[0]?.msg, new RegExp(`^the admin API is served on the public listener http://0\\.0\\.0\\.0:${gw.port}; set ADMIN_PORT \\(and ADMIN_HOST\\)`))
  t.notMatch(gw.output(), new RegExp(`${ADMIN_PASSWORD}|redis-secret-1`))
})

t.test('the admin API on a public listener is warned about once, naming ADMIN_PORT; loopback, ADMIN_PORT or auth off say nothing', async (t) => {
  const where = 'http://0.0.0.0:8081'
  t.match(adminExposureWarning(config({ HOST: '0.0.0.0' }), where), /^the admin API is served on the public listener http:\/\/0\.0\.0\.0:8081; set ADMIN_PORT \(and ADMIN_HOST\) to serve \/admin and \/metrics on their own listener$/)
  t.match(adminExposureWarning(config({ HOST: '10.1.2.3' }), 'http://10.1.2.3:8081'), /ADMIN_PORT/)
  t.match(adminExposureWarning(config({}), where), /ADMIN_PORT/, 'the default HOST is every interface')
  for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1']) {
    t.equal(adminExposureWarning(config({ HOST: host }), where), null, `HOST=${host}: loopback only`)
  }
  t.equal(adminExposureWarning(config({ HOST: '0.0.0.0', ADMIN_PORT: '8001' }), where), null, 'ADMIN_PORT set')
  t.equal(adminExposureWarning(config({ HOST: '0.0.0.0', ADMIN_AUTH_ENABLED: 'false' }), where), null, 'auth off has its own, louder warning')
  t.ok(isLoopbackHost('[::1]'))
  t.notOk(isLoopbackHost('::'))
  t.notOk(isLoopbackHost('128.0.0.1'))
})
