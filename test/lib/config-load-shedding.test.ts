// The load-shedding and admin-listener settings (docs/configuration.md#load-shedding): defaults, the routes-file fields, and
// the problems a bad value is reported with.
import t from 'tap'
import { loadConfig } from '../../lib/config.js'
import { configProblems as problems, routesFile } from '../support/app.js'

const load = (env: Record<string, string>) => loadConfig({ ADMIN_PASSWORD: 'pw', ...env }, { dotenv: false })

t.test('defaults: 10000 connections, no concurrency or tunnel cap, admin on the public listener', async (t) => {
  const c = load({})
  t.same(c.shedding, { maxConnections: 10_000, maxConcurrentRequests: null, maxWebsocketTunnels: null })
  t.equal(c.adminListener, null)
  for (const s of c.services) t.same(s.concurrency, { max: null, queueTimeoutMs: 0 })
  for (const s of c.services) t.equal(s.maxTunnels, null)
  const empty = load({ MAX_CONNECTIONS: '', MAX_CONCURRENT_REQUESTS: '', MAX_WEBSOCKET_TUNNELS: '', ADMIN_HOST: '', ADMIN_PORT: '' })
  t.same(empty.shedding, c.shedding, 'empty variables mean the defaults')
  t.equal(empty.adminListener, null)
})

t.test('the variables are read', async (t) => {
  const c = load({ MAX_CONNECTIONS: '500', MAX_CONCURRENT_REQUESTS: '64', MAX_WEBSOCKET_TUNNELS: '300', ADMIN_PORT: '8001' })
  t.same(c.shedding, { maxConnections: 500, maxConcurrentRequests: 64, maxWebsocketTunnels: 300 })
  t.same(c.adminListener, { host: '127.0.0.1', port: 8001 }, 'ADMIN_HOST defaults to loopback')
  t.same(load({ ADMIN_HOST: '0.0.0.0', ADMIN_PORT: '9000' }).adminListener, { host: '0.0.0.0', port: 9000 })
})

t.test('maxConcurrent, queueTimeoutMs and maxTunnels come from the routes file', async (t) => {
  const file = routesFile(t, [
    { name: 'capped', prefix: '/a', backends: [{ url: 'http://127.0.0.1:9' }], maxConcurrent: 20, queueTimeoutMs: 250, websocket: true, maxTunnels: 100 },
    { name: 'free', prefix: '/b', backends: [{ url: 'http://127.0.0.1:9' }] }
  ])
  const [capped, free] = load({ ROUTES_FILE: file }).services
  t.same(capped.concurrency, { max: 20, queueTimeoutMs: 250 })
  t.equal(capped.maxTunnels, 100)
  t.same(free.concurrency, { max: null, queueTimeoutMs: 0 })
  t.equal(free.maxTunnels, null)
})

t.test('bad values are reported with the variable or field', async (t) => {
  t.match(problems(() => load({ MAX_CONNECTIONS: '0' })), [/^MAX_CONNECTIONS: /])
  t.match(problems(() => load({ MAX_CONCURRENT_REQUESTS: 'many' })), [/^MAX_CONCURRENT_REQUESTS: /])
  t.match(problems(() => load({ MAX_WEBSOCKET_TUNNELS: '0' })), [/^MAX_WEBSOCKET_TUNNELS: /])
  t.match(problems(() => load({ MAX_WEBSOCKET_TUNNELS: 'many' })), [/^MAX_WEBSOCKET_TUNNELS: must be a whole number/])
  t.match(problems(() => load({ ADMIN_PORT: '70000' })), [/^ADMIN_PORT: /])
  t.match(problems(() => load({ ADMIN_HOST: '127.0.0.1' })), [/^ADMIN_HOST: needs ADMIN_PORT/])
  const file = routesFile(t, [
    { name: 'x', prefix: '/x', backends: [{ url: 'http://127.0.0.1:9' }], maxConcurrent: 0, queueTimeoutMs: -1 },
    { name: 'y', prefix: '/y', backends: [{ url: 'http://127.0.0.1:9' }], websocket: true, maxTunnels: 0 },
    { name: 'z', prefix: '/z', backends: [{ url: 'http://127.0.0.1:9' }], websocket: true, maxTunnels: 'many' }
  ])
  const found = problems(() => load({ ROUTES_FILE: file }))
  t.ok(found.some((p) => p.startsWith('ROUTES_FILE: services.0.maxConcurrent')), found.join('; '))
  t.ok(found.some((p) => p.startsWith('ROUTES_FILE: services.0.queueTimeoutMs')), found.join('; '))
  t.ok(found.some((p) => p.startsWith('ROUTES_FILE: services.1.maxTunnels')), found.join('; '))
  t.ok(found.some((p) => p.startsWith('ROUTES_FILE: services.2.maxTunnels')), found.join('; '))
})
