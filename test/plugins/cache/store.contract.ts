// The response cache's store contract (plugins/cache/types.ts, docs/caching.md#stores): the embedded
// and the Redis store both pass this one suite (store-memory.test.ts, store-redis.test.ts).
import type { Test } from 'tap'
import CachePolicy from 'http-cache-semantics'
import type { CacheEntry, CacheStore } from '../../../plugins/cache/types.js'
import type { RedisCacheStore } from '../../../plugins/cache/store-redis.js'
import type { RedisStore } from '../../../plugins/store/index.js'

export interface CacheStoreUnderTest {
  store: CacheStore
  /** Another store on the same data, as a second instance would open it (shared back ends only). */
  peer?: CacheStore
  cleanup (): Promise<void>
}

/** A Redis cache store with the store whose connections it uses. */
export interface OpenedRedisCache { store: RedisStore, cache: RedisCacheStore }

/** Two Redis cache stores on one prefix, as two instances open them; `after` runs once both are closed. */
export function sharedPair (a: OpenedRedisCache, b: OpenedRedisCache, after: () => Promise<void> = async () => {}): CacheStoreUnderTest {
  return {
    store: a.cache,
    peer: b.cache,
    async cleanup () {
      await Promise.all([a.cache.close(), b.cache.close()])
      await Promise.all([a.store.close(), b.store.close()])
      await after()
    }
  }
}

const POLICY = new CachePolicy({ url: '/x', headers: { host: 'gateway' } }, { status: 200, headers: { 'cache-control': 'max-age=60' } }).toObject()

export function entry (body: string, over: Partial<CacheEntry> = {}): CacheEntry {
  return { policy: POLICY, status: 200, headers: { 'content-type': 'text/plain', etag: '"1"' }, body: Buffer.from(body), variant: '', expiresAt: Date.now() + 60_000, staleIfErrorUntil: Date.now() + 60_000, ...over }
}

export function cacheStoreContract (t: Test, open: () => Promise<CacheStoreUnderTest>): void {
  const use = async (t: Test): Promise<CacheStoreUnderTest> => {
    const s = await open()
    t.teardown(() => s.cleanup())
    return s
  }

  t.test('an entry put is got back whole: status, fields, body bytes, policy, variant', async (t) => {
    const { store, peer } = await use(t)
    const bytes = Buffer.from([0, 1, 2, 255, 254, 10, 13])
    await store.put('svc:/a?x=1', entry('', { body: bytes, status: 404, headers: { 'set-x': ['a', 'b'] }, variant: 'accept=json\n' }))
    for (const s of [store, peer ?? store]) {
      const [got, ...rest] = await s.get('svc:/a?x=1')
      t.same(rest, [])
      t.equal(got.status, 404)
      t.same(got.headers, { 'set-x': ['a', 'b'] })
      t.ok(got.body.equals(bytes))
      t.equal(got.variant, 'accept=json\n')
      t.same(got.policy, POLICY)
    }
    t.same(await store.get('svc:/a'), [], 'the query is part of the key')
  })

  t.test('peek answers what get answers, or "ask me" (undefined), never something else', async (t) => {
    const { store, peer } = await use(t)
    const bodiesOf = (entries: CacheEntry[] | undefined): string[] | undefined => entries?.map((e) => e.body.toString()).sort()
    for (const s of [store, peer ?? store]) {
      const before = s.peek('svc:/p')
      t.ok(before === undefined || before.length === 0, 'nothing stored yet')
    }
    await store.put('svc:/p', entry('one', { variant: 'a=1\n' }))
    await store.put('svc:/p', entry('two', { variant: 'a=2\n' }))
    for (const s of [store, peer ?? store]) {
      const got = bodiesOf(await s.get('svc:/p'))
      t.same(got, ['one', 'two'])
      const peeked = bodiesOf(s.peek('svc:/p'))
      if (peeked !== undefined) t.same(peeked, got)
    }
    await store.delete('svc:/p')
    // The delete reaches the peer's near copy by message: wait for it (or for the copy's short life).
    for (const s of [store, peer ?? store]) {
      const deadline = Date.now() + 5000
      while ((s.peek('svc:/p')?.length ?? 0) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
      t.same(bodiesOf(s.peek('svc:/p')) ?? [], [], 'a deleted key peeks as nothing or "ask me"')
      t.same(await s.get('svc:/p'), [])
    }
  })

  t.test('variants of one URL are kept side by side; the same variant is replaced', async (t) => {
    const { store } = await use(t)
    await store.put('svc:/v', entry('en', { variant: 'lang=en\n' }))
    await store.put('svc:/v', entry('fr', { variant: 'lang=fr\n' }))
    await store.put('svc:/v', entry('en2', { variant: 'lang=en\n' }))
    const bodies = (await store.get('svc:/v')).map((e) => e.body.toString()).sort()
    t.same(bodies, ['en2', 'fr'])
  })

  t.test('an entry past its expiresAt is never returned', async (t) => {
    const { store } = await use(t)
    await store.put('svc:/gone', entry('old', { expiresAt: Date.now() + 150 }))
    t.equal((await store.get('svc:/gone')).length, 1)
    const deadline = Date.now() + 5000
    let left = 1
    while (left > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      left = (await store.get('svc:/gone')).length
    }
    t.equal(left, 0)
  })

  t.test('delete drops every variant of a URL', async (t) => {
    const { store, peer } = await use(t)
    await store.put('svc:/d', entry('a', { variant: 'a\n' }))
    await store.put('svc:/d', entry('b', { variant: 'b\n' }))
    await store.put('svc:/other', entry('o'))
    await store.delete('svc:/d')
    t.same(await (peer ?? store).get('svc:/d'), [])
    t.equal((await store.get('svc:/other')).length, 1)
  })

  t.test('purge: everything, one service, or a path prefix of a service on a segment boundary', async (t) => {
    const { store, peer } = await use(t)
    const keys = ['a:/x', 'a:/x/1?q=1', 'a:/x?q', 'a:/xy', 'a:/y', 'b:/x']
    const fill = async (): Promise<void> => { for (const k of keys) await store.put(k, entry(k)) }
    const present = async (): Promise<string[]> => {
      const out: string[] = []
      for (const k of keys) if ((await (peer ?? store).get(k)).length > 0) out.push(k)
      return out
    }
    await fill()
    t.equal(await store.purge('a', '/x'), 3)
    t.same(await present(), ['a:/xy', 'a:/y', 'b:/x'])
    await fill()
    t.equal(await store.purge('a', null), 5)
    t.same(await present(), ['b:/x'])
    await fill()
    t.equal(await store.purge(null, null), 6)
    t.same(await present(), [])
  })
}
