// The Store contract (plugins/store/types.ts, docs/architecture.md#the-store): every back end passes this one suite.
// Timing assertions are lower bounds on waits, except docs/admin-api.md#api-keys's one-second revocation bound.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { ApiKeyRecord, Store, StoredApiKey } from '../../../plugins/store/types.js'
import { bucketContract } from './buckets.contract.js'

export interface StoreUnderTest {
  store: Store
  /** Closes the store (and any peer) and removes its data. */
  cleanup (): Promise<void>
  /**
   * Another Store on the same data, as a second gateway instance would build it (same Redis and
   * prefix). Only for shared back ends; cleanup() closes it too.
   */
  peer?: () => Promise<Store>
}

/**
 * A shared back end under test: stores opened on one prefix, as several gateway instances would
 * open them. cleanup() closes every store opened, then runs `removeData` (if the data outlives them).
 */
export async function sharedStores (open: (prefix: string) => Promise<Store>, prefix: string, removeData?: () => Promise<unknown>): Promise<StoreUnderTest> {
  const stores = [await open(prefix)]
  return {
    store: stores[0],
    async peer () {
      const store = await open(prefix)
      stores.push(store)
      return store
    },
    async cleanup () {
      await Promise.all(stores.map((s) => s.close()))
      await removeData?.()
    }
  }
}

const RECORD_FIELDS = ['active', 'burst', 'created_at', 'expires_at', 'id', 'last_used_at', 'name', 'quota', 'rate_limit', 'services']

/** A key as the admin API would create it; the hash is of a random raw key. */
export function makeKey (overrides: Partial<StoredApiKey> = {}): StoredApiKey {
  return {
    id: randomUUID(),
    name: 'contract key',
    rate_limit: null,
    burst: null,
    services: null,
    active: true,
    created_at: new Date().toISOString(),
    expires_at: null,
    last_used_at: null,
    quota: null,
    hash: createHash('sha256').update(`gw_${randomBytes(32).toString('base64url')}`).digest('hex'),
    ...overrides
  }
}

function withoutHash (key: StoredApiKey): ApiKeyRecord {
  const { hash, ...record } = key
  return record
}

export interface ContractOptions {
  /**
   * The back end is shared by several gateway instances (Redis): the cross-instance case runs, and
   * every store must then offer a `peer`. A one-process back end (embedded) has no such promise to test.
   */
  shared: boolean
}

export function storeContract (t: Test, makeStore: () => Promise<StoreUnderTest>, options: ContractOptions): void {
  async function withStore (t: Test, fn: (store: Store, s: StoreUnderTest) => Promise<void>): Promise<void> {
    const s = await makeStore()
    t.teardown(s.cleanup)
    await fn(s.store, s)
  }

  t.test('a created key is found by its hash, with the hash', (t) => withStore(t, async (store) => {
    const key = makeKey({ name: 'svc', rate_limit: 120, burst: 20, services: ['auth-service'] })
    await store.keys.create(key)
    t.same(await store.keys.findByHash(key.hash), key)
  }))

  t.test('a key\'s quota is kept, and its counter counts up to the limit and is forgotten with the key', (t) => withStore(t, async (store) => {
    const quota = { limit: 2, period: 'month' as const, timezone: 'Europe/Berlin' }
    const key = makeKey({ quota })
    await store.keys.create(key)
    t.same((await store.keys.get(key.id))?.quota, quota)
    t.same((await store.keys.findByHash(key.hash))?.quota, quota)
    t.match(await store.quotas.consume(key.id, quota), { allowed: true, used: 1, limit: 2 })
    t.match(await store.quotas.consume(key.id, quota), { allowed: true, used: 2 })
    t.match(await store.quotas.consume(key.id, quota), { allowed: false, used: 2 })
    t.match(await store.quotas.usage(key.id, quota), { allowed: false, used: 2 })
    await store.quotas.forget(key.id)
    t.match(await store.quotas.usage(key.id, quota), { allowed: true, used: 0 })
  }))

  t.test('get returns the record without the hash', (t) => withStore(t, async (store) => {
    const key = makeKey()
    await store.keys.create(key)
    const record = await store.keys.get(key.id)
    t.same(record, withoutHash(key))
    t.same(Object.keys(record ?? {}).sort(), RECORD_FIELDS)
  }))

  t.test('unknown ids and hashes give null, and revoke or delete of an unknown id gives false', (t) => withStore(t, async (store) => {
    t.equal(await store.keys.get(randomUUID()), null)
    t.equal(await store.keys.findByHash(makeKey().hash), null)
    t.equal(await store.keys.revoke(randomUUID()), false)
    t.equal(await store.keys.delete(randomUUID()), false)
  }))

  t.test('list is empty for a new store, then holds every record in creation order and never a hash', (t) => withStore(t, async (store) => {
    t.same(await store.keys.list(), [])
    const base = Date.now()
    const keys = [0, 1, 2].map((i) => makeKey({ name: `k${i}`, created_at: new Date(base + i * 1000).toISOString() }))
    for (const key of [keys[2], keys[0], keys[1]]) await store.keys.create(key)
    const list = await store.keys.list()
    t.same(list, keys.map(withoutHash))
    for (const record of list) t.same(Object.keys(record).sort(), RECORD_FIELDS)
  }))

  t.test('optional fields round-trip: null stays null, services [] stays an empty list', (t) => withStore(t, async (store) => {
    const none = makeKey()
    const empty = makeKey({ services: [] })
    const full = makeKey({
      rate_limit: 1,
      burst: 1_000_000,
      services: ['auth-service', 'user-service'],
      expires_at: '2031-01-02T03:04:05.000Z',
      last_used_at: '2025-06-01T00:00:00.000Z'
    })
    for (const key of [none, empty, full]) await store.keys.create(key)
    t.same(await store.keys.get(none.id), withoutHash(none))
    t.same((await store.keys.get(empty.id))?.services, [])
    t.same(await store.keys.findByHash(full.hash), full)
  }))

  t.test('creating a key whose id or hash exists rejects and changes nothing', (t) => withStore(t, async (store) => {
    const key = makeKey({ name: 'original' })
    await store.keys.create(key)
    await t.rejects(store.keys.create(makeKey({ id: key.id, name: 'same id' })))
    await t.rejects(store.keys.create(makeKey({ hash: key.hash, name: 'same hash' })))
    t.same(await store.keys.list(), [withoutHash(key)])
  }))

  t.test('revoke marks the key inactive but keeps it', (t) => withStore(t, async (store) => {
    const key = makeKey()
    await store.keys.create(key)
    t.equal(await store.keys.revoke(key.id), true)
    t.equal((await store.keys.get(key.id))?.active, false)
    t.equal((await store.keys.findByHash(key.hash))?.active, false)
    t.equal(await store.keys.revoke(key.id), true, 'revoking twice is still a known id')
    t.equal((await store.keys.list()).length, 1)
  }))

  t.test('delete removes the key from get, findByHash and list', (t) => withStore(t, async (store) => {
    const key = makeKey()
    const other = makeKey()
    await store.keys.create(key)
    await store.keys.create(other)
    t.equal(await store.keys.delete(key.id), true)
    t.equal(await store.keys.get(key.id), null)
    t.equal(await store.keys.findByHash(key.hash), null)
    t.same((await store.keys.list()).map((r) => r.id), [other.id])
    t.equal(await store.keys.delete(key.id), false, 'a second delete finds nothing')
  }))

  t.test('touch records last use and never recreates an unknown key', (t) => withStore(t, async (store) => {
    const key = makeKey()
    await store.keys.create(key)
    const at = new Date(Date.now() + 5000).toISOString()
    await store.keys.touch(key.id, at)
    t.equal((await store.keys.get(key.id))?.last_used_at, at)
    t.equal((await store.keys.findByHash(key.hash))?.last_used_at, at)
    const ghost = randomUUID()
    await store.keys.touch(ghost, at)
    t.equal(await store.keys.get(ghost), null)
    t.equal((await store.keys.list()).length, 1)
  }))

  t.test('revoke and delete tell this store\'s invalidation listeners the key\'s hash', (t) => withStore(t, async (store) => {
    const heard: string[] = []
    store.keys.onInvalidate((hash) => heard.push(hash))
    const a = makeKey()
    const b = makeKey()
    await store.keys.create(a)
    await store.keys.create(b)
    await store.keys.revoke(a.id)
    await store.keys.delete(b.id)
    await store.keys.revoke(randomUUID())
    t.ok(heard.includes(a.hash), 'revoked hash heard')
    t.ok(heard.includes(b.hash), 'deleted hash heard')
    t.same([...new Set(heard)].sort(), [a.hash, b.hash].sort(), 'nothing else heard')
  }))

  t.test('reservations count up within one window, report the time left and stop at the maximum', (t) => withStore(t, async (store) => {
    const id = `login:${randomUUID()}`
    const first = await store.failures.reserve(id, 3, 60_000)
    t.same({ allowed: first.allowed, count: first.count }, { allowed: true, count: 1 })
    t.ok(first.resetMs > 55_000 && first.resetMs <= 60_000, `resetMs ${first.resetMs}`)
    t.equal((await store.failures.reserve(id, 3, 60_000)).count, 2)
    const third = await store.failures.reserve(id, 3, 60_000)
    t.same({ allowed: third.allowed, count: third.count }, { allowed: true, count: 3 })
    t.ok(third.resetMs <= first.resetMs, 'the window is fixed: later reservations do not extend it')
    const fourth = await store.failures.reserve(id, 3, 60_000)
    t.same({ allowed: fourth.allowed, count: fourth.count }, { allowed: false, count: 3 }, 'refused at the maximum, nothing added')
    t.ok(fourth.resetMs > 0 && fourth.resetMs <= first.resetMs)
    t.equal((await store.failures.reserve(`login:${randomUUID()}`, 3, 60_000)).count, 1, 'ids are independent')
  }))

  t.test('concurrent reservations never pass the maximum', (t) => withStore(t, async (store, s) => {
    const id = `login:${randomUUID()}`
    // A shared back end: two instances race on the same id.
    const stores = s.peer === undefined ? [store] : [store, await s.peer()]
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => stores[i % stores.length].failures.reserve(id, 10, 60_000)))
    t.equal(results.filter((r) => r.allowed).length, 10)
    t.equal((await store.failures.peek(id)).count, 10)
  }))

  t.test('a released reservation is given back, never below 0, and the window keeps its end', (t) => withStore(t, async (store) => {
    const id = `login:${randomUUID()}`
    await store.failures.release(id)
    t.same(await store.failures.peek(id), { count: 0, resetMs: 0 }, 'releasing an unknown id is a no-op')
    const first = await store.failures.reserve(id, 2, 60_000)
    await store.failures.reserve(id, 2, 60_000)
    t.equal((await store.failures.reserve(id, 2, 60_000)).allowed, false)
    await store.failures.release(id)
    const again = await store.failures.reserve(id, 2, 60_000)
    t.same({ allowed: again.allowed, count: again.count }, { allowed: true, count: 2 })
    t.ok(again.resetMs <= first.resetMs, 'not extended')
    await store.failures.release(id)
    await store.failures.release(id)
    await store.failures.release(id)
    t.equal((await store.failures.peek(id)).count, 0)
  }))

  t.test('peek reads a count without adding, and 0 for an unknown id', (t) => withStore(t, async (store) => {
    const id = `login:${randomUUID()}`
    t.same(await store.failures.peek(id), { count: 0, resetMs: 0 })
    await store.failures.reserve(id, 10, 60_000)
    await store.failures.reserve(id, 10, 60_000)
    const peeked = await store.failures.peek(id)
    t.equal(peeked.count, 2)
    t.ok(peeked.resetMs > 0 && peeked.resetMs <= 60_000)
    t.equal((await store.failures.peek(id)).count, 2)
  }))

  t.test('a failure window ends and counting starts again', (t) => withStore(t, async (store) => {
    const id = `login:${randomUUID()}`
    await store.failures.reserve(id, 2, 200)
    await store.failures.reserve(id, 2, 200)
    t.equal((await store.failures.reserve(id, 2, 200)).allowed, false)
    await sleep(350)
    t.same(await store.failures.peek(id), { count: 0, resetMs: 0 })
    t.same((await store.failures.reserve(id, 2, 200)).count, 1)
  }))

  t.test('ping is true while the back end answers and false once closed; close twice is fine', async (t) => {
    const s = await makeStore()
    t.teardown(s.cleanup)
    t.equal(await s.store.ping(), true)
    await s.store.close()
    t.equal(await s.store.ping(), false)
    await s.store.close()
  })

  if (options.shared) {
    t.test('a second instance on the same data sees keys, and hears a revocation within 1 s', async (t) => {
      const s = await makeStore()
      t.teardown(s.cleanup)
      if (s.peer === undefined) throw new Error('a shared back end must offer a peer store')
      const other = await s.peer()
      const key = makeKey()
      await s.store.keys.create(key)
      t.same(await other.keys.findByHash(key.hash), key, 'created on one, found on the other')

      const heard = new Promise<string>((resolve) => other.keys.onInvalidate(resolve))
      const started = Date.now()
      await s.store.keys.revoke(key.id)
      // 1 s is the promise; 3 s leaves room for a busy 2-core machine.
      const hash = await Promise.race([heard, sleep(3000).then(() => 'nothing within 3 s')])
      t.equal(hash, key.hash, `heard after ${Date.now() - started} ms`)
      t.equal((await other.keys.findByHash(key.hash))?.active, false)

      const deleted = new Promise<string>((resolve) => other.keys.onInvalidate(resolve))
      const second = makeKey()
      await other.keys.create(second)
      await s.store.keys.delete(second.id)
      t.equal(await Promise.race([deleted, sleep(3000).then(() => 'nothing within 3 s')]), second.hash)
    })
  }

  const svc = (name: string, prefix: string) => ({ name, prefix, backends: [{ url: 'http://127.0.0.1:9', weight: 1 }] })

  t.test('services: a new store is at version 0 and empty; each write bumps the version', (t) => withStore(t, async (store) => {
    t.same(await store.services.snapshot(), { version: 0, services: [] })
    t.equal(await store.services.put('a', svc('a', '/a'), '2026-01-01T00:00:00.000Z', 0), 1)
    t.equal(await store.services.put('b', svc('b', '/b'), '2026-01-01T00:00:01.000Z', 1), 2)
    t.equal(await store.services.put('a', svc('a', '/a2'), '2026-01-01T00:00:02.000Z', 2), 3, 'a replace')
    t.equal(await store.services.version(), 3)
    t.same(await store.services.snapshot(), {
      version: 3,
      services: [
        { name: 'b', definition: svc('b', '/b'), version: 2, updated_at: '2026-01-01T00:00:01.000Z', seeded: false },
        { name: 'a', definition: svc('a', '/a2'), version: 3, updated_at: '2026-01-01T00:00:02.000Z', seeded: false }
      ]
    }, 'in write order, each with the version it was written at')
    t.equal(await store.services.delete('b', 3), 4)
    t.equal(await store.services.delete('b', 4), 0, 'deleting an unknown name changes nothing')
    t.same((await store.services.snapshot()).services.map((s) => s.name), ['a'])
  }))

  t.test('services: a write decided on an old version is refused and changes nothing', (t) => withStore(t, async (store) => {
    await store.services.put('a', svc('a', '/a'), new Date().toISOString(), 0)
    t.equal(await store.services.put('b', svc('b', '/b'), new Date().toISOString(), 0), null)
    t.equal(await store.services.delete('a', 0), null)
    t.same((await store.services.snapshot()).services.map((s) => s.name), ['a'])
    t.equal(await store.services.version(), 1)
  }))

  t.test('services: seed writes only into a store never written, even one emptied since', (t) => withStore(t, async (store) => {
    t.equal(await store.services.seed([{ name: 'a', definition: svc('a', '/a') }, { name: 'b', definition: svc('b', '/b') }], new Date().toISOString()), true)
    t.same(await store.services.version(), 1)
    t.same((await store.services.snapshot()).services.map((s) => s.name).sort(), ['a', 'b'])
    await store.services.delete('a', 1)
    await store.services.delete('b', 2)
    t.equal(await store.services.seed([{ name: 'c', definition: svc('c', '/c') }], new Date().toISOString()), false)
    t.same(await store.services.snapshot(), { version: 3, services: [] })
  }))

  t.test('services: seeded definitions are marked until the admin API writes them; a seeded put marks them again', (t) => withStore(t, async (store) => {
    await store.services.seed([{ name: 'a', definition: svc('a', '/a') }, { name: 'b', definition: svc('b', '/b') }], new Date().toISOString())
    const seeded = async () => Object.fromEntries((await store.services.snapshot()).services.map((s) => [s.name, s.seeded]))
    t.same(await seeded(), { a: true, b: true })
    t.equal(await store.services.put('a', svc('a', '/a2'), new Date().toISOString(), 1), 2)
    t.same(await seeded(), { a: false, b: true }, 'an ordinary put clears the mark')
    t.equal(await store.services.put('b', svc('b', '/b2'), new Date().toISOString(), 2, true), 3)
    t.same(await seeded(), { a: false, b: true }, 'a seeded put keeps it')
  }))

  t.test('services: listeners hear the new version of every change, from any instance within 1 s', async (t) => {
    const s = await makeStore()
    t.teardown(s.cleanup)
    const other = s.peer === undefined ? s.store : await s.peer()
    if (s.peer !== undefined) await sleep(100) // the peer's subscription
    const heard: number[] = []
    other.services.onChange((v) => heard.push(v))
    await s.store.services.put('a', svc('a', '/a'), new Date().toISOString(), 0)
    const started = Date.now()
    while (!heard.includes(1) && Date.now() - started < 3000) await sleep(10) // 1 s promised, room for a busy machine
    t.ok(heard.includes(1), `heard version 1 after ${Date.now() - started} ms`)
    await s.store.services.delete('a', 1)
    while (!heard.includes(2) && Date.now() - started < 6000) await sleep(10)
    t.ok(heard.includes(2), 'heard the delete')
    t.same((await other.services.snapshot()).version, 2)
  })

  t.test('buckets', async (t) => {
    bucketContract(t, async () => {
      const s = await makeStore()
      return { buckets: s.store.buckets, cleanup: s.cleanup }
    })
  })
}
