// The quota counters of each back end (docs/policies.md#quotas): the embedded one (SQLite) and the
// in-process fallback with a fake clock across period boundaries, and the Redis one on the Redis
// server's clock, exact under concurrency from two clients whose own clocks are hours apart.
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import { periodAt } from '../../../lib/quota-period.js'
import { MemoryQuotas } from '../../../plugins/store/quotas-memory.js'
import { RedisQuotas } from '../../../plugins/store/quotas-redis.js'
import { SqliteQuotas } from '../../../plugins/store/quotas-sqlite.js'
import type { Quota, QuotaStore } from '../../../plugins/store/types.js'
import { tempDir } from '../../support/basics.js'
import { cleanRedis, REDIS_URL } from '../../support/app.js'

const HOUR: Quota = { limit: 3, period: 'hour', timezone: 'UTC' }

/** The same rollover story for every in-process back end: a fake clock crosses period ends. */
function rollover (name: string, make: (now: () => number) => QuotaStore & { close?: () => void }): void {
  t.test(`${name}: counts up to the limit, refuses without counting, and starts again at the period's end`, async (t) => {
    const clock = { now: Date.parse('2026-01-31T22:59:58.000Z') }
    const quotas = make(() => clock.now)
    t.teardown(() => quotas.close?.())
    const month: Quota = { limit: 2, period: 'month', timezone: 'Europe/Berlin' }
    const a = await quotas.consume('k1', month)
    t.match(a, { allowed: true, used: 1, limit: 2, start: Date.parse('2025-12-31T23:00:00Z'), end: Date.parse('2026-01-31T23:00:00Z') })
    t.match(await quotas.consume('k1', month), { allowed: true, used: 2 })
    t.match(await quotas.consume('k1', month), { allowed: false, used: 2 }, 'over the limit: refused')
    t.match(await quotas.usage('k1', month), { allowed: false, used: 2 }, 'the refusal was not counted')
    t.match(await quotas.consume('k2', month), { allowed: true, used: 1 }, 'keys count apart')
    clock.now = Date.parse('2026-01-31T22:59:59.999Z')
    t.match(await quotas.consume('k1', month), { allowed: false }, 'the last millisecond is still the old period')
    clock.now = Date.parse('2026-01-31T23:00:00.000Z')
    t.match(await quotas.usage('k1', month), { used: 0, start: Date.parse('2026-01-31T23:00:00Z') }, 'midnight in Berlin: a new month')
    t.match(await quotas.consume('k1', month), { allowed: true, used: 1, end: Date.parse('2026-02-28T23:00:00Z') })
    await quotas.forget('k1')
    t.match(await quotas.usage('k1', month), { used: 0 })
  })
}

rollover('sqlite', (now) => new SqliteQuotas({ dataDir: tempDir(t), now }))
rollover('memory', (now) => new MemoryQuotas({ now }))

t.test('sqlite: the count is in gateway.db and survives closing it', async (t) => {
  const dir = tempDir(t)
  const first = new SqliteQuotas({ dataDir: dir })
  for (let i = 0; i < 3; i++) t.match(await first.consume('k', HOUR), { allowed: true })
  first.close()
  const second = new SqliteQuotas({ dataDir: dir })
  t.teardown(() => second.close())
  t.match(await second.consume('k', HOUR), { allowed: false, used: 3 })
})

t.test('redis', async (t) => {
  const prefix = `gwtest:${randomBytes(6).toString('hex')}:`
  const clients: Redis[] = []
  const client = async (): Promise<Redis> => {
    const c = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    await c.connect()
    clients.push(c)
    return c
  }
  t.teardown(async () => {
    await cleanRedis(prefix)
    for (const c of clients) c.disconnect()
  })
  const admin = await client()
  const serverNow = async (): Promise<number> => {
    const [s, us] = await admin.time()
    return Number(s) * 1000 + Math.floor(Number(us) / 1000)
  }

  t.test('two instances whose clocks are hours apart share one exact count on the server clock', async (t) => {
    const ahead = new RedisQuotas(await client(), { keyPrefix: prefix, now: () => Date.now() + 5 * 3_600_000 })
    const behind = new RedisQuotas(await client(), { keyPrefix: prefix, now: () => Date.now() - 3 * 3_600_000 })
    const quota: Quota = { limit: 5, period: 'hour', timezone: 'UTC' }
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? ahead : behind).consume('shared', quota)))
    t.equal(results.filter((r) => r.allowed).length, 5, 'exactly the limit admitted')
    t.same(results.filter((r) => r.allowed).map((r) => r.used).sort((a, b) => a - b), [1, 2, 3, 4, 5])
    const expected = periodAt(await serverNow(), 'hour')
    for (const r of results) t.same([r.start, r.end], [expected.start, expected.end], 'the period of the server clock')
    t.match(await ahead.usage('shared', quota), { used: 5, allowed: false })
  })

  t.test('a counter of an earlier period starts again; the key expires at the period end', async (t) => {
    const quotas = new RedisQuotas(await client(), { keyPrefix: prefix })
    const quota: Quota = { limit: 2, period: 'day', timezone: 'Asia/Kolkata' }
    const current = periodAt(await serverNow(), 'day', 'Asia/Kolkata')
    const previous = periodAt(current.start - 1, 'day', 'Asia/Kolkata')
    await admin.hset(quotas.key('old'), 's', previous.start, 'n', 2)
    t.match(await quotas.usage('old', quota), { used: 0, allowed: true })
    t.match(await quotas.consume('old', quota), { allowed: true, used: 1, start: current.start, end: current.end })
    const expiresAt = await admin.pexpiretime(quotas.key('old'))
    t.equal(expiresAt, current.end)
    t.same(await admin.hgetall(quotas.key('old')), { s: String(current.start), n: '1' })
  })

  t.test('the count is hash-tagged per key: one Cluster slot per script', async (t) => {
    const quotas = new RedisQuotas(await client(), { keyPrefix: prefix })
    t.equal(quotas.key('abc'), `${prefix}{q:abc}`)
  })
})

t.test('sqlite: a gateway.db made before quotas gains the column; its keys have no quota', async (t) => {
  const { DatabaseSync } = await import('node:sqlite')
  const { join } = await import('node:path')
  const { SqliteKeyStore } = await import('../../../plugins/store/embedded.js')
  const dir = tempDir(t)
  const old = new DatabaseSync(join(dir, 'gateway.db'))
  old.exec(`CREATE TABLE api_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, rate_limit INTEGER,
    burst INTEGER, services TEXT, active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, expires_at TEXT, last_used_at TEXT) STRICT`)
  old.prepare("INSERT INTO api_keys (id, hash, name, created_at) VALUES ('old', 'h-old', 'before quotas', '2026-01-01T00:00:00.000Z')").run()
  old.close()
  const keys = new SqliteKeyStore({ dataDir: dir })
  t.teardown(() => keys.close())
  t.match(await keys.get('old'), { id: 'old', name: 'before quotas', quota: null })
  const quota: Quota = { limit: 9, period: 'day', timezone: 'UTC' }
  await keys.create({ id: 'new', hash: 'h-new', name: 'n', rate_limit: null, burst: null, services: null, active: true, created_at: '2026-01-02T00:00:00.000Z', expires_at: null, last_used_at: null, quota })
  t.same((await keys.findByHash('h-new'))?.quota, quota)
})
