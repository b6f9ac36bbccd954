// Every request ends exactly once, with one status, duration and outcome that the access log and
// the metrics both take from plugins/request-end.ts. Over real sockets: a relayed response, the
// gateway's own answer, a request shed by a concurrency cap, a client that leaves mid-exchange,
// and a URL the router refuses.
import { request as httpRequest } from 'node:http'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { slow, startBackend, type Backend } from '../support/backends.js'
import { testConfig, routesFile } from '../support/app.js'
import { http, parseMetrics, metricValue } from '../support/http.js'
import { until } from '../support/basics.js'
import type { Teardownable } from '../support/basics.js'

interface Line { msg: string, status?: number, outcome?: string, route?: string, aborted?: boolean, reqId?: string }

async function gateway (t: Teardownable, backend: Backend) {
  const raw: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { raw.push(...String(chunk).split('\n').filter(Boolean)); cb() } })
  const config = testConfig(t, {
    ADMIN_AUTH_ENABLED: 'false',
    ROUTES_FILE: routesFile(t, [
      { name: 'fast', prefix: '/fast', backends: [{ url: backend.url }], auth: 'none', rateLimit: false },
      { name: 'capped', prefix: '/capped', backends: [{ url: backend.url }], auth: 'none', rateLimit: false, maxConcurrent: 1 }
    ])
  })
  const app = await buildApp(config, { logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const lines = () => raw.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'request completed' || l.msg === 'request aborted')
  return { app, port, lines }
}

t.test('each ending is decided once and seen alike by the access log and the metrics', async (t) => {
  const backend = await startBackend((req, res, body, n) => {
    if (req.url?.includes('slow') === true) return slow(1500)(req, res, body, n)
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
  })
  t.teardown(() => backend.close())
  const { app, port, lines } = await gateway(t, backend)

  t.equal((await http(port, '/fast/x')).status, 200, 'relayed')
  t.equal((await http(port, '/nowhere')).status, 404, 'answered by the gateway')
  t.equal((await http(port, '/fast/%zz')).status, 400, 'refused by the router')

  // One request holds the capped service's only slot; the next one is shed.
  const holding = http(port, '/capped/slow')
  await until(() => backend.hits >= 1)
  t.equal((await http(port, '/capped/other')).status, 503, 'shed')
  t.equal((await holding).status, 200)

  // A client that leaves while the backend is still thinking.
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/fast/slow', agent: false })
    req.on('error', () => resolve())
    req.end()
    setTimeout(() => { req.destroy(); resolve() }, 300)
  })
  await until(() => lines().some((l) => l.outcome === 'client_gone'))
  await until(() => app.requestEnds.inFlight === 0)

  const byRoute = (route: string, status: number) => lines().filter((l) => l.route === route && l.status === status)
  t.same(byRoute('/fast', 200).map((l) => l.outcome), ['relayed'])
  t.same(byRoute('unmatched', 404).map((l) => l.outcome), ['answered'])
  t.equal(lines().filter((l) => l.status === 400).length, 1, 'the router refusal has one line')
  t.same(byRoute('/capped', 503).map((l) => l.outcome), ['shed'])
  t.same(byRoute('/capped', 200).map((l) => l.outcome), ['relayed'])
  const gone = byRoute('/fast', 499)
  t.same(gone.map((l) => [l.outcome, l.aborted, l.msg]), [['client_gone', true, 'request aborted']], 'one line for the client that left')

  // The metrics counted the same endings, once each.
  const m = parseMetrics((await http(port, '/metrics')).body)
  for (const [path, status, n] of [['/fast', '200', 1], ['unmatched', '404', 1], ['/capped', '503', 1], ['/capped', '200', 1], ['/fast', '499', 1]] as const) {
    t.equal(metricValue(m, 'gateway_http_requests_total', { path, status }), n, `${path} ${status} counted once`)
  }
  t.equal(metricValue(m, 'gateway_requests_in_flight'), 1, 'only the scrape itself is in flight')
})
