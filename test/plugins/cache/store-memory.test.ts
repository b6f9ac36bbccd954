// The embedded response cache store: the contract suite, and its bound in bytes (LRU).
import t from 'tap'
import { MemoryCacheStore } from '../../../plugins/cache/store-memory.js'
import { cacheStoreContract, entry } from './store.contract.js'

cacheStoreContract(t, async () => {
  const store = new MemoryCacheStore(64 * 1024 * 1024)
  return { store, cleanup: async () => { await store.close() } }
})

t.test('the least recently used URL is dropped to stay under the bound in bytes', async (t) => {
  const store = new MemoryCacheStore(10_000)
  const body = 'x'.repeat(3000)
  await store.put('s:/1', entry(body))
  await store.put('s:/2', entry(body))
  await store.put('s:/3', entry(body))
  t.ok(store.bytes() <= 10_000)
  await store.get('s:/1') // now the most recently used
  await store.put('s:/4', entry(body))
  t.ok(store.bytes() <= 10_000, `held ${store.bytes()} bytes`)
  t.equal((await store.get('s:/2')).length, 0, 'the least recently used went first')
  t.equal((await store.get('s:/1')).length, 1)
  t.equal((await store.get('s:/4')).length, 1)
})

t.test('an entry larger than the whole bound is not kept, and bytes return to 0 when all is gone', async (t) => {
  const store = new MemoryCacheStore(5000)
  await store.put('s:/huge', entry('x'.repeat(6000)))
  t.same(await store.get('s:/huge'), [])
  await store.put('s:/small', entry('x'))
  t.ok(store.bytes() > 0)
  await store.purge(null, null)
  t.equal(store.bytes(), 0)
})
