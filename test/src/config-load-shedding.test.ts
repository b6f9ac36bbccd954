// The load-shedding and admin-listener settings (SPEC §16): defaults, the routes-file fields, and
// the problems a bad value is reported with.
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { configProblems as problems, routesFile } from '../support/app.js'

const load = (env: Record<string, string>) => loadConfig({ ADMIN_PASSWORD: 'pw', ...env }, { dotenv: false })

t.test('defaults: 10000 connections, no concurrency cap, admin on the public listener', async (t) => {
  const c = load({})
  t.same(c.shedding, { maxConnections: 10_000, maxConcurrentRequests: null })
  t.equal(c.adminListener, null)
  for (const s of c.services) t.same(s.concurrency, { max: null, queueTimeoutMs: 0 })
  const empty = load({ MAX_CONNECTIONS: '', MAX_CONCURRENT_REQUESTS: '', ADMIN_HOST: '', ADMIN_PORT: '' })
  t.same(empty.shedding, c.shedding, 'empty variables mean the defaults')
  t.equal(empty.adminListener, null)
})

t.test('the variables are read', async (t) => {
  const c = load({ MAX_CONNECTIONS: '500', MAX_CONCURRENT_REQUESTS: '64', ADMIN_PORT: '8001' })
  t.same(c.shedding, { maxConnections: 500, maxConcurrentRequests: 64 })
  t.same(c.adminListener, { host: '127.0.0.1', port: 8001 }, 'ADMIN_HOST defaults to loopback')
  t.same(load({ ADMIN_HOST: '0.0.0.0', ADMIN_PORT: '9000' }).adminListener, { host: '0.0.0.0', port: 9000 })
})

t.test('maxConcurrent and queueTimeoutMs come from the routes file', async (t) => {
  const file = routesFile(t, [
    { name: 'capped', prefix: '/a', backends: [{ url: 'http://127.0.0.1:9' }], maxConcurrent: 20, queueTimeoutMs: 250 },
    { name: 'free', prefix: '/b', backends: [{ url: 'http://127.0.0.1:9' }] }
  ])
  const [capped, free] = load({ ROUTES_FILE: file }).services
  t.same(capped.concurrency, { max: 20, queueTimeoutMs: 250 })
  t.same(free.concurrency, { max: null, queueTimeoutMs: 0 })
})

t.test('bad values are reported with the variable or field', async (t) => {
  t.match(problems(() => load({ MAX_CONNECTIONS: '0' })), [/^MAX_CONNECTIONS: /])
  t.match(problems(() => load({ MAX_CONCURRENT_REQUESTS: 'many' })), [/^MAX_CONCURRENT_REQUESTS: /])
  t.match(problems(() => load({ ADMIN_PORT: '70000' })), [/^ADMIN_PORT: /])
  t.match(problems(() => load({ ADMIN_HOST: '127.0.0.1' })), [/^ADMIN_HOST: needs ADMIN_PORT/])
  const file = routesFile(t, [{ name: 'x', prefix: '/x', backends: [{ url: 'http://127.0.0.1:9' }], maxConcurrent: 0, queueTimeoutMs: -1 }])
  const found = problems(() => load({ ROUTES_FILE: file }))
  t.ok(found.some((p) => p.startsWith('ROUTES_FILE: services.0.maxConcurrent')), found.join('; '))
  t.ok(found.some((p) => p.startsWith('ROUTES_FILE: services.0.queueTimeoutMs')), found.join('; '))
})
