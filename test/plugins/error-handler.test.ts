// Errors raised by Fastify's router before any hook runs (docs/operations.md): a bad percent-escape in the
// path (FST_ERR_BAD_URL) and an over-long path parameter (FST_ERR_MAX_PARAM_LENGTH) get the JSON
// envelope, the X-Request-Id, an access-log line and a metric, and never echo the URL.
import t from 'tap'
import { Writable } from 'node:stream'
import { REDACT, buildApp } from '../../src/app.js'
import { requestSerializer } from '../../plugins/access-log.js'
import { testConfig } from '../support/app.js'

type Teardownable = Parameters<typeof testConfig>[0]

async function gateway (t: Teardownable) {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l))
      cb()
    }
  })
  const app = await buildApp(testConfig(t, { LOG_LEVEL: 'info' }), {
    logger: { level: 'info', stream, redact: { paths: REDACT, censor: '[REDACTED]' }, serializers: { req: requestSerializer } }
  })
  t.teardown(() => app.close())
  await app.ready()
  return { app, lines }
}

const LONG = 'x'.repeat(300)
const CASES: Array<[string, number, string]> = [
  ['/admin/apikeys/%zz', 400, 'unmatched'],
  ['/admin/apikeys/%zz/revoke', 400, 'unmatched'],
  // An over-long parameter no longer matches its admin route; the admin scope's catch-all
  // (routes/admin/method-not-allowed.ts) answers 404 once the caller is authenticated.
  [`/admin/apikeys/${LONG}`, 404, '/admin/*'],
  [`/admin/circuit-breakers/${LONG}/reset`, 404, '/admin/*'],
  ['/api/users/%zz', 400, 'unmatched']
]
const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')

for (const [url, status, route] of CASES) {
  t.test(`${url.slice(0, 40)}… answers ${status} as the JSON envelope with the request id, without echoing the URL`, async (t) => {
    const { app, lines } = await gateway(t)
    const method = url.endsWith('/reset') || url.endsWith('/revoke') ? 'POST' : 'GET'
    const res = await app.inject({ method, url, headers: { 'x-request-id': 'router-err-1', authorization: AUTH } })
    t.equal(res.statusCode, status)
    t.match(res.headers['content-type'], /^application\/json/)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['error', 'message', 'status'])
    t.equal(body.status, 'error')
    t.notOk(res.body.includes('%zz') || res.body.includes('xxxxxxxx') || res.body.includes('apikeys') || res.body.includes('FST_'), 'the URL and Fastify codes are not echoed')
    t.equal(res.headers['x-request-id'], 'router-err-1')
    const access = lines.filter((l) => l.msg === 'request completed')
    t.equal(access.length, 1, 'one access-log line')
    t.match(access[0], { reqId: 'router-err-1', method, status, route })
  })
}

t.test('a router error without a client request id gets a generated one, and is counted', async (t) => {
  const { app } = await gateway(t)
  const res = await app.inject('/admin/apikeys/%zz')
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const metrics = await app.inject('/metrics')
  t.match(metrics.body, /gateway_http_requests_total\{method="GET",path="unmatched",status="400"\} 1/)
})
