// JSON merge patch (RFC 7396) and the definition diff used by the services admin API.
import t from 'tap'
import { diffDefinitions, mergePatch } from '../../lib/service-changes.js'

t.test('merge patch: members merge, null removes, arrays and scalars replace', async (t) => {
  const target = { prefix: '/a', backends: [{ url: 'http://x', weight: 1 }], retry: { maxRetries: 2, multiplier: 2 }, timeoutMs: 5 }
  t.same(mergePatch(target, { retry: { maxRetries: 0 }, timeoutMs: null, backends: [{ url: 'http://y' }] }), {
    prefix: '/a', backends: [{ url: 'http://y' }], retry: { maxRetries: 0, multiplier: 2 }
  })
  t.same(target.retry, { maxRetries: 2, multiplier: 2 }, 'the target is not changed')
  t.same(mergePatch({ rateLimit: { rpm: 1, burst: 1 } }, { rateLimit: false }), { rateLimit: false })
  t.same(mergePatch({ a: 1 }, [1, 2]), [1, 2], 'a non-object patch replaces the whole')
  t.same(mergePatch('x', { a: { b: null, c: 1 } }), { a: { c: 1 } })
})

t.test('diff: only changed top-level fields, absent as null', async (t) => {
  t.same(diffDefinitions({ a: 1, b: [1], c: { d: 1 } }, { a: 1, b: [1], c: { d: 1 } }), {})
  t.same(diffDefinitions({ a: 1, b: [1] }, { a: 2, b: [1, 2], e: true }), { a: { from: 1, to: 2 }, b: { from: [1], to: [1, 2] }, e: { from: null, to: true } })
  t.same(diffDefinitions(null, { a: 1 }), { a: { from: null, to: 1 } }, 'a creation')
  t.same(diffDefinitions({ a: 1 }, null), { a: { from: 1, to: null } }, 'a deletion')
})
