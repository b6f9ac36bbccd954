// The service table: root prefix, longest prefix, collisions with the gateway's own routes.
import t from 'tap'
import { loadConfig, ConfigError } from '../../../lib/config.js'
import { listen, routesFile } from '../../support/app.js'
import { http } from '../../support/http.js'
import { service } from '../../support/suite.js'
import { echoUpstream } from '../../support/upstreams.js'

t.test('a root prefix serves every path the gateway does not answer itself', async (t) => {
  const root = await echoUpstream(t)
  const api = await echoUpstream(t)
  const { url } = await listen(t, {
    ROUTES_FILE: routesFile(t, [service('site', '/', root.url), service('api', '/api', api.url, { stripPrefix: true })]),
    RATE_LIMIT_BURST: '1000'
  })
  const port = Number(new URL(url).port)
  for (const path of ['/', '/index.html', '/apix', '/healthz', '/a/b?c=d']) {
    t.equal((await http(port, path)).status, 200, path)
    t.equal(root.requests.at(-1)?.url, path, `${path} reaches the root service unchanged`)
  }
  t.equal((await http(port, '/api/v1?x=1')).status, 200)
  t.equal(api.requests.at(-1)?.url, '/v1?x=1', 'the longer prefix wins')
  const health = await http(port, '/health')
  t.equal(health.json().status, 'ok', '/health is the gateway\'s own')
  t.equal(root.requests.filter((r) => r.url.startsWith('/health?') || r.url === '/health').length, 0)
  const before = root.requests.length
  // /admin/* asks for credentials first (then 404), the rest is 404: never the root service.
  for (const [path, status] of [['/admin/unknown', 401], ['/metrics/x', 404], ['/services', 404], ['/health/deep', 404]] as const) {
    const res = await http(port, path)
    t.equal(res.status, status, `${path}: the gateway's own space is never proxied`)
  }
  t.equal(root.requests.length, before)
  const opts = await http(port, '/anything', { method: 'OPTIONS' })
  t.equal(opts.status, 200, 'a plain OPTIONS is proxied')
  t.equal(root.requests.at(-1)?.method, 'OPTIONS')
})

t.test('a prefix that collides with the gateway\'s own routes is a config error naming the service', async (t) => {
  for (const prefix of ['/health', '/ready', '/metrics', '/info', '/services', '/admin', '/admin/keys']) {
    const file = routesFile(t, [{ name: 'bad-one', prefix, backends: [{ url: 'http://127.0.0.1:9' }] }])
    try {
      loadConfig({ ADMIN_PASSWORD: 'x', ROUTES_FILE: file }, { dotenv: false })
      t.fail(`${prefix} accepted`)
    } catch (err) {
      t.ok(err instanceof ConfigError, prefix)
      t.match((err as ConfigError).problems.join('\n'), /ROUTES_FILE: 0\.prefix: service "bad-one"/, `${prefix}: names the service`)
    }
  }
  const ok = loadConfig({ ADMIN_PASSWORD: 'x', ROUTES_FILE: routesFile(t, [{ name: 'h', prefix: '/healthy', backends: [{ url: 'http://127.0.0.1:9' }] }]) }, { dotenv: false })
  t.equal(ok.services[0].prefix, '/healthy', 'a prefix that only starts with the same letters is fine')
})
