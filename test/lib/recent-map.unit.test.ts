import t from 'tap'
import { RecentMap } from '../../lib/recent-map.js'

t.test('an entry is kept at least ttlMs, and dropped at the second rotation after it was written', async (t) => {
  const m = new RecentMap<number>(1000, 100, 0)
  m.set('a', 1, 0)
  t.equal(m.get('a', 999), 1, 'within the first period')
  t.equal(m.get('a', 1000), 1, 'after one rotation: in the older generation')
  t.equal(m.get('a', 1999), 1)
  t.equal(m.get('a', 2000), undefined, 'gone at the second rotation (2 × ttlMs when the map is busy)')
  m.set('b', 2, 2100)
  t.equal(m.get('b', 5000), undefined, 'two idle periods drop both generations at once')
})

t.test('memory follows the recent write rate, not the bound', async (t) => {
  const m = new RecentMap<number>(1000, 1_000_000, 0)
  // 20 writes a second for 10 minutes: only the last ~2 s are held.
  let most = 0
  for (let ms = 0; ms < 600_000; ms += 50) {
    m.set(`k${ms}`, ms, ms)
    most = Math.max(most, m.size)
  }
  t.ok(most <= 40, `at most ${most} entries held`)
})

t.test('each generation is bounded; delete and clear reach both', async (t) => {
  const m = new RecentMap<number>(1000, 3, 0)
  for (const k of ['a', 'b', 'c', 'd']) m.set(k, 1, 0)
  t.equal(m.size, 3)
  t.equal(m.get('d', 0), undefined, 'past the bound a write is dropped')
  m.set('e', 1, 1000)
  m.delete('a')
  t.equal(m.get('a', 1000), undefined)
  t.equal(m.get('e', 1000), 1)
  m.clear()
  t.equal(m.size, 0)
})
