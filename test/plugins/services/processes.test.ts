// Services across real gateway processes (docs/admin-api.md#managing-services): two gateways on one Redis see a change made on
// the other within 1 s; a restarted gateway keeps the services; SIGHUP re-reads ROUTES_FILE in
// `file` mode and keeps the running table when the file is broken. Compiled gateway: npm run build.
import { writeFileSync } from 'node:fs'
import t from 'tap'
import { cleanRedis, REDIS_URL, uniquePrefix as testPrefix } from '../../support/app.js'
import { startBackend } from '../../support/backends.js'
import { sleep } from '../../support/basics.js'
import { type GatewayProcess, startGateway } from '../../support/gateway-process.js'
import { admin, http } from '../../support/http.js'
import { redisEnv } from '../../support/redis-env.js'
import { service } from '../../support/suite.js'

async function backend (t: { teardown (fn: () => unknown): void }, tag: string) {
  const b = await startBackend((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }).end(tag) })
  t.teardown(() => b.close())
  return b
}

/**
 * Changes propagate within 1 s (docs/architecture.md); measured from here, through fresh HTTP
 * connections on a busy 2-core machine, up to 3 s is allowed.
 */
const SOON = 3000

const def = (url: string) => ({ prefix: '/api/orders', backends: [{ url }], rateLimit: false })

/** ms until `path` on `gw` answers `want` (status and, when given, body), or -1 after 10 s. */
async function seen (gw: GatewayProcess, path: string, want: { status: number, body?: string }): Promise<number> {
  const started = performance.now()
  while (performance.now() - started < 10000) {
    const res = await http(gw.port, path)
    if (res.status === want.status && (want.body === undefined || res.body === want.body)) return performance.now() - started
    await sleep(5)
  }
  return -1
}

t.test('two gateways on one Redis: a change on either is served by the other within 1 s', async (t) => {
  const a = await backend(t, 'A')
  const b = await backend(t, 'B')
  const prefix = testPrefix()
  t.teardown(() => cleanRedis(prefix))
  const env = redisEnv(REDIS_URL, prefix)
  const [gw1, gw2] = await Promise.all([startGateway(t, { env }), startGateway(t, { env })])

  t.equal((await admin(gw1.port, 'PUT', '/admin/services/orders', def(a.url))).status, 201)
  const created = await seen(gw2, '/api/orders/1', { status: 200, body: 'A' })
  t.ok(created >= 0 && created < SOON, `created on 1, served by 2 after ${Math.round(created)} ms`)

  t.equal((await admin(gw2.port, 'PATCH', '/admin/services/orders', { backends: [{ url: b.url }] })).status, 200)
  const moved = await seen(gw1, '/api/orders/1', { status: 200, body: 'B' })
  t.ok(moved >= 0 && moved < SOON, `changed on 2, moved on 1 after ${Math.round(moved)} ms`)

  t.equal((await admin(gw1.port, 'DELETE', '/admin/services/orders')).status, 200)
  const gone = await seen(gw2, '/api/orders/1', { status: 404 })
  t.ok(gone >= 0 && gone < SOON, `deleted on 1, 404 on 2 after ${Math.round(gone)} ms`)

  const v1 = (await http(gw1.port, '/health')).json().services_version
  t.equal((await http(gw2.port, '/health')).json().services_version, v1, 'both on the same table version')

  t.equal((await admin(gw2.port, 'PUT', '/admin/services/kept', { ...def(a.url), prefix: '/api/kept' })).status, 201)
  await gw1.stop()
  const again = await startGateway(t, { env, port: gw1.port })
  t.equal((await http(again.port, '/api/kept/x')).body, 'A', 'a restarted gateway keeps the services')
  const listed = (await admin(again.port, 'GET', '/admin/services')).json()
  t.same(listed.data.map((s: { name: string }) => s.name), ['auth-service', 'kept', 'user-service'])
  const changed = again.logs.find((l) => l.event === 'service_changed')
  t.notOk(changed, 'the restarted one changed nothing itself')
  await gw2.logsSettled()
  const logged = gw2.logs.find((l) => l.event === 'service_changed' && l.service === 'kept')
  t.match(logged, { user: 'admin', action: 'created', diff: { prefix: { from: null, to: '/api/kept' } } }, 'the change is logged with the admin user and the diff')
})

t.test('SIGHUP re-reads ROUTES_FILE; a broken file is logged and the running table kept', async (t) => {
  const a = await backend(t, 'A')
  const b = await backend(t, 'B')
  const gw = await startGateway(t, { services: [service('orders', '/api/orders', a.url)] })
  const file = gw.env.ROUTES_FILE
  t.equal((await http(gw.port, '/api/orders/1')).body, 'A')
  const v1 = (await http(gw.port, '/health')).json().services_version

  writeFileSync(file, JSON.stringify({ services: [service('orders', '/api/orders', b.url), service('more', '/api/more', a.url)] }))
  gw.signal('SIGHUP')
  t.ok(await seen(gw, '/api/orders/1', { status: 200, body: 'B' }) >= 0, 'the new backend after SIGHUP')
  t.equal((await http(gw.port, '/api/more/1')).body, 'A', 'and the new service')
  t.equal((await http(gw.port, '/health')).json().services_version, v1 + 1)

  writeFileSync(file, JSON.stringify({ services: [service('orders', 'no-slash', b.url)] }))
  gw.signal('SIGHUP')
  const failed = await gw.waitForLog((l) => l.event === 'services_reload_failed')
  t.ok(failed, 'the broken file is logged')
  t.match(JSON.stringify(failed?.problems), /0\.prefix/, 'naming the field')
  t.equal((await http(gw.port, '/api/orders/1')).body, 'B', 'the running table is kept')
  t.equal((await http(gw.port, '/api/more/1')).body, 'A')
  t.equal((await http(gw.port, '/health')).json().services_version, v1 + 1)
  t.ok(gw.running, 'SIGHUP never stops the gateway')
})
