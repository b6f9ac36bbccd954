// The rate limiter inside the whole gateway (buildApp): proxied responses carry the fields, a 429
// is never forwarded, the gateway's own endpoints are not limited, and the counter is exported.
import t from 'tap'
import { build, routesFile } from '../support/app.js'
import { startBackend } from '../support/backends.js'

t.test('proxied responses carry rate-limit fields and an empty bucket is not forwarded', async (t) => {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const app = await build(t, {
    RATE_LIMIT_BURST: '2',
    RATE_LIMIT_RPM: '1',
    ROUTES_FILE: routesFile(t, [{ name: 'echo', prefix: '/api/echo', backends: [{ url: backend.url }] }])
  })

  const first = await app.inject('/api/echo/1')
  t.equal(first.statusCode, 200)
  t.match(first.headers, {
    'x-ratelimit-limit': '2',
    'x-ratelimit-remaining': '1',
    'ratelimit-policy': '"default";q=2;w=120',
    ratelimit: '"default";r=1;t=60'
  })
  t.equal((await app.inject('/api/echo/2')).statusCode, 200)
  const limited = await app.inject('/api/echo/3')
  t.equal(limited.statusCode, 429)
  // The next token is 60 s after the first request, minus however long a busy machine took since.
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter >= 50 && retryAfter <= 60, `Retry-After is the wait for the next token (${retryAfter})`)
  t.equal(limited.headers.ratelimit, `"default";r=0;t=${retryAfter}`)
  t.equal(limited.json().status, 'error')
  t.equal(backend.hits, 2, 'the limited request never reached the backend')

  for (const url of ['/health', '/metrics']) {
    const res = await app.inject(url)
    t.not(res.statusCode, 429, `${url} is not limited`)
    t.equal(res.headers['x-ratelimit-limit'], undefined)
  }
  const metrics = await app.inject('/metrics')
  t.match(metrics.body, /^gateway_rate_limited_total 1$/m)
})
