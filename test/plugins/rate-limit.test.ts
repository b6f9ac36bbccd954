// The rate-limit hook through a small Fastify app, with in-memory buckets on a clock the test
// moves, so counts and headers are exact.
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { MemoryBuckets } from '../../plugins/store/buckets-memory.js'
import { bucketId, limitsFor, rateLimitHeaders } from '../../plugins/rate-limit.js'
import type { ServiceConfig } from '../../lib/config.js'
import { rateLimitApp, type TestAppOptions } from '../support/rate-limit-app.js'

const LIMIT_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit-policy', 'ratelimit']

async function clockedApp (t: Parameters<typeof rateLimitApp>[0], opts: TestAppOptions = {}) {
  const clock = { now: 1_000_000 }
  const built = await rateLimitApp(t, {
    ...opts,
    env: { RATE_LIMIT_BURST: '3', RATE_LIMIT_RPM: '60', ...opts.env },
    buckets: new MemoryBuckets({ now: () => clock.now })
  })
  return { ...built, clock }
}

const pick = (res: LightMyRequestResponse, names: string[]) =>
  Object.fromEntries(names.map((n) => [n, res.headers[n]]))

t.test('a client gets burst requests with exact headers, then 429 with Retry-After', async (t) => {
  const { app, metrics, clock } = await clockedApp(t)
  const seen = []
  for (let i = 0; i < 3; i++) {
    const before = Date.now()
    const res = await app.inject('/svc/x')
    t.equal(res.statusCode, 200)
    const reset = Number(res.headers['x-ratelimit-reset'])
    const fullInMs = (i + 1) * 1000
    t.ok(reset >= Math.ceil((before + fullInMs) / 1000) && reset <= Math.ceil((Date.now() + fullInMs) / 1000),
      'X-RateLimit-Reset is the Unix second the bucket is full again')
    seen.push(pick(res, ['x-ratelimit-limit', 'x-ratelimit-remaining', 'ratelimit-policy', 'ratelimit', 'retry-after']))
  }
  t.same(seen, [
    { 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '2', 'ratelimit-policy': '"default";q=3;w=3', ratelimit: '"default";r=2;t=1', 'retry-after': undefined },
    { 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '1', 'ratelimit-policy': '"default";q=3;w=3', ratelimit: '"default";r=1;t=2', 'retry-after': undefined },
    { 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '0', 'ratelimit-policy': '"default";q=3;w=3', ratelimit: '"default";r=0;t=3', 'retry-after': undefined }
  ])

  const limited = await app.inject('/svc/x')
  t.equal(limited.statusCode, 429)
  t.same(limited.json(), { status: 'error', error: 'Too Many Requests', message: 'Rate limit exceeded; retry after the Retry-After delay' })
  t.same(pick(limited, ['x-ratelimit-limit', 'x-ratelimit-remaining', 'ratelimit-policy', 'ratelimit', 'retry-after']), {
    'x-ratelimit-limit': '3',
    'x-ratelimit-remaining': '0',
    'ratelimit-policy': '"default";q=3;w=3',
    ratelimit: '"default";r=0;t=1', // on a 429, t = Retry-After (draft-11 §6)
    'retry-after': '1'
  })
  t.equal(metrics.rateLimited, 1)

  clock.now += 500
  const stillEmpty = await app.inject('/svc/x')
  t.equal(stillEmpty.statusCode, 429)
  t.equal(stillEmpty.headers['retry-after'], '1', 'half a second rounds up to 1')
  clock.now += 500
  const refilled = await app.inject('/svc/x')
  t.equal(refilled.statusCode, 200)
  t.equal(refilled.headers['x-ratelimit-remaining'], '0')
  t.equal(metrics.rateLimited, 2)
})

t.test('Retry-After is whole seconds until a token exists', async (t) => {
  // 20 rpm: one token every 3 s.
  const { app, clock } = await clockedApp(t, { env: { RATE_LIMIT_BURST: '1', RATE_LIMIT_RPM: '20' } })
  t.equal((await app.inject('/svc/a')).statusCode, 200)
  const first = await app.inject('/svc/a')
  t.equal(first.headers['retry-after'], '3')
  t.equal(first.headers['ratelimit-policy'], '"default";q=1;w=3')
  clock.now += 1001
  t.equal((await app.inject('/svc/a')).headers['retry-after'], '2')
  clock.now += 1998
  t.equal((await app.inject('/svc/a')).headers['retry-after'], '1', '1 ms still means 1 s')
  clock.now += 1
  t.equal((await app.inject('/svc/a')).statusCode, 200)
})

t.test('the gateway\'s own routes are not limited', async (t) => {
  const { app } = await clockedApp(t, { env: { RATE_LIMIT_BURST: '1' } })
  for (let i = 0; i < 5; i++) {
    const res = await app.inject('/health')
    t.equal(res.statusCode, 200)
    t.same(pick(res, LIMIT_HEADERS), Object.fromEntries(LIMIT_HEADERS.map((h) => [h, undefined])))
  }
})

t.test('a spoofed X-Forwarded-For from an untrusted peer does not pick the bucket', async (t) => {
  const { app } = await clockedApp(t) // trustProxy false, as TRUST_PROXY's default
  const statuses = []
  for (let i = 1; i <= 5; i++) {
    const res = await app.inject({
      url: '/svc/x',
      remoteAddress: '127.0.0.1',
      headers: { 'x-forwarded-for': `203.0.113.${i}`, 'x-real-ip': `203.0.113.${i}`, forwarded: `for=203.0.113.${i}` }
    })
    t.equal(res.json().ip ?? '127.0.0.1', '127.0.0.1')
    statuses.push(res.statusCode)
  }
  t.same(statuses, [200, 200, 200, 429, 429])
  t.equal((await app.inject({ url: '/svc/x', remoteAddress: '127.0.0.2' })).statusCode, 200, 'another socket address has its own bucket')
})

t.test('X-Forwarded-For from a peer outside TRUST_PROXY\'s list changes nothing', async (t) => {
  const { app } = await clockedApp(t, { trustProxy: ['10.0.0.0/8'] })
  const statuses = []
  for (let i = 1; i <= 4; i++) {
    statuses.push((await app.inject({ url: '/svc/x', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': `203.0.113.${i}` } })).statusCode)
  }
  t.same(statuses, [200, 200, 200, 429])
})

t.test('with the peer trusted, the client address in X-Forwarded-For picks the bucket', async (t) => {
  const { app } = await clockedApp(t, { trustProxy: ['127.0.0.1'] })
  for (let i = 1; i <= 5; i++) {
    const res = await app.inject({ url: '/svc/x', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': `203.0.113.${i}` } })
    t.equal(res.statusCode, 200)
    t.equal(res.json().ip, `203.0.113.${i}`)
  }
  const same = []
  for (let i = 0; i < 4; i++) {
    // A client-supplied left part is ignored: the right-most untrusted address is the client.
    same.push((await app.inject({ url: '/svc/x', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': `198.51.100.${i}, 203.0.113.99` } })).statusCode)
  }
  t.same(same, [200, 200, 200, 429])
})

t.test('a key\'s rate_limit and burst override the defaults, in a bucket of its own', async (t) => {
  const { app } = await clockedApp(t, {
    consumers: { big: { id: 'key-big', rateLimit: 120, burst: 5 }, rpmOnly: { id: 'key-rpm', rateLimit: 600, burst: null } }
  })
  const statuses = []
  for (let i = 0; i < 6; i++) statuses.push((await app.inject({ url: '/svc/x', headers: { 'x-test-key': 'big' } })))
  t.same(statuses.map((r) => r.statusCode), [200, 200, 200, 200, 200, 429])
  t.equal(statuses[0].headers['ratelimit-policy'], '"default";q=5;w=3')
  t.equal(statuses[5].headers['retry-after'], '1', '120 rpm: a token every 500 ms')
  t.equal((await app.inject('/svc/x')).statusCode, 200, 'the same address without the key has its own bucket')

  const rpmOnly = await app.inject({ url: '/svc/x', headers: { 'x-test-key': 'rpmOnly' } })
  t.equal(rpmOnly.headers['x-ratelimit-limit'], '3', 'burst falls back to RATE_LIMIT_BURST')
  t.equal(rpmOnly.headers['ratelimit-policy'], '"default";q=3;w=1')
})

t.test('a service\'s rateLimit applies in buckets of its own; a key\'s limits still win', async (t) => {
  const { app } = await clockedApp(t, {
    services: [
      { name: 'plain', prefix: '/plain' },
      { name: 'other', prefix: '/other' },
      { name: 'strict', prefix: '/strict', rateLimit: { rpm: 30, burst: 2 } }
    ],
    consumers: { k: { id: 'key-1', rateLimit: null, burst: 4 } }
  })
  const codes = async (url: string, n: number, headers = {}) => {
    const out = []
    for (let i = 0; i < n; i++) out.push((await app.inject({ url, headers })).statusCode)
    return out
  }
  t.same(await codes('/plain/x', 3), [200, 200, 200])
  t.same(await codes('/other/x', 1), [429], 'services without rateLimit share one bucket per client')
  const strict = await app.inject('/strict/x')
  t.equal(strict.headers['ratelimit-policy'], '"default";q=2;w=4')
  t.same(await codes('/strict/x', 2), [200, 429])
  t.same(await codes('/strict/x', 5, { 'x-test-key': 'k' }), [200, 200, 200, 200, 429], 'the key\'s burst (4) beats the service\'s (2)')
})

t.test('limits and bucket ids follow the documented precedence', async (t) => {
  const svc = { name: 's', rateLimit: null } as unknown as ServiceConfig
  const own = { name: 's', rateLimit: { rpm: 30, burst: 2 } } as unknown as ServiceConfig
  const defaults = { rpm: 60, burst: 10 }
  t.same(limitsFor(null, svc, defaults), { rpm: 60, burst: 10 })
  t.same(limitsFor(null, own, defaults), { rpm: 30, burst: 2 })
  t.same(limitsFor({ id: 'a', rateLimit: 100, burst: null }, own, defaults), { rpm: 100, burst: 2 })
  t.same(limitsFor({ id: 'a', rateLimit: null, burst: 7 }, svc, defaults), { rpm: 60, burst: 7 })
  t.same(limitsFor({ id: 'a', rateLimit: 0, burst: 0 }, svc, defaults), { rpm: 1, burst: 1 }, 'never a zero divisor')
  t.equal(bucketId(svc, null, '::1'), 'ip:::1')
  t.equal(bucketId(svc, { id: 'a', rateLimit: null, burst: null }, '::1'), 'k:a')
  t.equal(bucketId(own, null, '10.0.0.1'), 's:ip:10.0.0.1')
  t.equal(bucketId(own, { id: 'a', rateLimit: null, burst: null }, '::1'), 's:k:a')
})

t.test('headers for LD-05\'s bucket (C = 20, r = 10/s)', async (t) => {
  const ok = rateLimitHeaders({ allowed: true, limit: 20, remaining: 19, resetMs: 100, retryAfterMs: 0 }, 600, 1_700_000_000_000)
  t.same(ok, {
    'x-ratelimit-limit': '20',
    'x-ratelimit-remaining': '19',
    'x-ratelimit-reset': '1700000001',
    'ratelimit-policy': '"default";q=20;w=2',
    ratelimit: '"default";r=19;t=1'
  })
  const denied = rateLimitHeaders({ allowed: false, limit: 20, remaining: 0, resetMs: 1950, retryAfterMs: 50 }, 600, 1_700_000_000_000)
  t.equal(denied.ratelimit, '"default";r=0;t=1')
  t.equal(denied['x-ratelimit-reset'], '1700000002')
})
