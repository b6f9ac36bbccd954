// Retry decisions and delays (docs/proxying.md#retries-and-circuit-breakers), as pure functions.
import t from 'tap'
import type { RetryConfig } from '../../lib/config.js'
import { backoffDelay, isIdempotent, isRetryableStatus, parseRetryAfter, RetryBudget, retryDelay } from '../../lib/retry-policy.js'

const cfg = (over: Partial<RetryConfig> = {}): RetryConfig =>
  ({ maxRetries: 3, initialDelayMs: 100, maxDelayMs: 5000, multiplier: 2, jitterFactor: 0, ...over })

t.test('only GET, HEAD, OPTIONS, PUT and DELETE are idempotent', async (t) => {
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'get', 'put']) t.ok(isIdempotent(m), m)
  for (const m of ['POST', 'PATCH', 'CONNECT', 'TRACE', 'PROPFIND', '']) t.notOk(isIdempotent(m), m)
})

t.test('only 502, 503 and 504 are retryable statuses', async (t) => {
  t.same([500, 501, 502, 503, 504, 505, 429, 404, 200].filter(isRetryableStatus), [502, 503, 504])
})

t.test('backoff doubles from the initial delay and is capped at the maximum', async (t) => {
  t.same([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, cfg({ maxDelayMs: 1000 }))), [100, 200, 400, 800, 1000, 1000])
  t.same([0, 1, 2].map((n) => backoffDelay(n, cfg({ jitterFactor: 0.5 }), () => 0.5)), [100, 200, 400], 'mid-point jitter is no jitter')
  t.same([0, 1, 2].map((n) => backoffDelay(n, cfg({ multiplier: 1.5 }))), [100, 150, 225])
  t.equal(backoffDelay(0, cfg({ initialDelayMs: 0, maxDelayMs: 0 })), 0)
  t.equal(backoffDelay(60, cfg()), 5000, 'a huge exponent stays at the cap')
})

t.test('jitter stays within ±jitterFactor and never leaves [0, max]', async (t) => {
  const c = cfg({ jitterFactor: 0.1 })
  let lo = Infinity
  let hi = -Infinity
  for (let i = 0; i < 5000; i++) {
    const d = backoffDelay(2, c)
    lo = Math.min(lo, d)
    hi = Math.max(hi, d)
  }
  t.ok(lo >= 360 && hi <= 440, `400 ± 10% → [${lo}, ${hi}]`)
  t.ok(hi - lo > 40, 'and actually spreads')
  t.equal(backoffDelay(0, cfg({ jitterFactor: 1 }), () => 0), 0, 'full jitter down reaches 0, not below')
  t.equal(backoffDelay(10, cfg({ jitterFactor: 1, maxDelayMs: 1000 }), () => 0.999999), 1000, 'jitter up never passes the cap')
  t.equal(backoffDelay(0, cfg({ jitterFactor: 0.1 }), () => 0), 90)
  t.equal(backoffDelay(0, cfg({ jitterFactor: 0.1 }), () => 1), 110)
})

t.test('Retry-After delta-seconds are seconds, in milliseconds', async (t) => {
  t.equal(parseRetryAfter('1'), 1000)
  t.equal(parseRetryAfter(' 120 '), 120_000)
  t.equal(parseRetryAfter('0'), 0)
  t.equal(parseRetryAfter(['2', '5']), 2000, 'the first of repeated headers')
  t.equal(parseRetryAfter('9'.repeat(400)), Number.MAX_SAFE_INTEGER, 'absurd values saturate')
})

t.test('Retry-After HTTP-dates count from now and never go negative', async (t) => {
  const now = Date.parse('2024-01-01T12:00:00Z')
  t.equal(parseRetryAfter('Mon, 01 Jan 2024 12:00:30 GMT', now), 30_000)
  t.equal(parseRetryAfter('Monday, 01-Jan-24 12:00:05 GMT', now), 5000, 'RFC 850 form')
  t.equal(parseRetryAfter('Mon Jan  1 12:00:07 2024', now), 7000, 'asctime form, read as GMT')
  t.equal(parseRetryAfter('Mon, 01 Jan 2024 11:00:00 GMT', now), 0, 'a past date means now')
})

t.test('an invalid Retry-After is null', async (t) => {
  for (const v of [undefined, '', ' ', '-1', '1.5', '1s', 'soon', '2024-01-01', 'Mon, 99 Jan 2024 12:00:00 GMT', 'Mon, 01 Jan 2024 12:00:00 PST', []]) {
    t.equal(parseRetryAfter(v as string | string[] | undefined), null, JSON.stringify(v))
  }
})

t.test('the retry delay honours Retry-After up to the maximum delay', async (t) => {
  const c = cfg({ maxDelayMs: 3000 })
  t.equal(retryDelay(0, c), 100)
  t.equal(retryDelay(0, c, '1'), 1000, 'Retry-After longer than the backoff wins')
  t.equal(retryDelay(3, c, '0'), 800, 'the backoff wins over a shorter Retry-After')
  t.equal(retryDelay(0, c, '3600'), 3000, 'capped at the maximum delay')
  t.equal(retryDelay(1, c, 'garbage'), 200, 'an invalid header is ignored')
})

t.test('the retry budget always allows 10 retries per second', async (t) => {
  let now = 0
  const b = new RetryBudget({ now: () => now })
  let granted = 0
  for (let i = 0; i < 50; i++) if (b.tryAcquire()) granted++
  t.equal(granted, 10, 'no requests at all: the floor only')
  now = 1000
  t.ok(b.tryAcquire(), 'a new second, a new floor')
})

t.test('the retry budget allows 20% of the last 10 seconds of requests beyond the floor', async (t) => {
  let now = 0
  const b = new RetryBudget({ now: () => now })
  for (let i = 0; i < 1000; i++) b.recordRequest()
  let granted = 0
  for (let i = 0; i < 1000; i++) if (b.tryAcquire()) granted++
  t.equal(granted, 200, '20% of 1000')
  now = 5000
  t.equal(Array.from({ length: 50 }, () => b.tryAcquire()).filter(Boolean).length, 10, 'ratio spent: only the per-second floor')
  now = 9_999
  t.equal(Array.from({ length: 50 }, () => b.tryAcquire()).filter(Boolean).length, 10, 'second 0 is still in the window: floor only')
  now = 10_000
  for (let i = 0; i < 200; i++) b.recordRequest()
  const after = Array.from({ length: 100 }, () => b.tryAcquire()).filter(Boolean).length
  t.equal(after, 20, 'second 0 left the window: 20% of 200 = 40 retries, 20 already made in seconds 5 and 9, plus this second\'s floor')
})

t.test('the retry budget honours custom ratio, window and floor', async (t) => {
  let now = 0
  const b = new RetryBudget({ ratio: 0.5, windowMs: 2000, minPerSecond: 0, now: () => now })
  t.notOk(b.tryAcquire(), 'no floor, no requests: no retry')
  for (let i = 0; i < 10; i++) b.recordRequest()
  t.equal(Array.from({ length: 10 }, () => b.tryAcquire()).filter(Boolean).length, 5)
  now = 2000
  t.notOk(b.tryAcquire(), 'the 2 s window has moved on')
  now = 1e9
  for (let i = 0; i < 2; i++) b.recordRequest()
  t.ok(b.tryAcquire())
  t.notOk(b.tryAcquire())
})
