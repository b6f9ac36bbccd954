// The cache's choice of a stored variant (plugins/cache/policy.ts `select`) against the library's
// own answer: remembering what the library said for plain requests must never change an answer,
// only skip asking again.
import t from 'tap'
import CachePolicy from 'http-cache-semantics'
import { policyRequest, select, storageDecision, variantOf } from '../../../plugins/cache/policy.js'
import type { CacheEntry } from '../../../plugins/cache/types.js'

const SETTINGS = { ttlSeconds: 0, staleIfErrorSeconds: 0, maxEntryBytes: 1_000_000 }
const KEY = 'svc:/v'

/** An entry stored from a request with `reqHeaders` and a response with `resHeaders`, `ageS` seconds ago. */
function stored (reqHeaders: Record<string, string>, resHeaders: Record<string, string>, ageS = 0): CacheEntry {
  const req = policyRequest('GET', KEY, reqHeaders, null)
  const decision = storageDecision(req, 200, resHeaders, SETTINGS)
  if (decision === null) throw new Error('not storable')
  const policy = decision.policy.toObject()
  policy.t -= ageS * 1000
  return { policy, status: 200, headers: resHeaders, variant: variantOf(resHeaders.vary, req.headers), expiresAt: Date.now() + 600_000, staleIfErrorUntil: Date.now() + 600_000, body: Buffer.from(JSON.stringify(reqHeaders)) }
}

/** The library alone: the first entry it says answers `req` without revalidation. */
function reference (entries: CacheEntry[], req: CachePolicy.Request): CacheEntry | null {
  for (const e of entries) if (CachePolicy.fromObject(e.policy).satisfiesWithoutRevalidation(req)) return e
  return null
}

t.test('select answers as the library does, for plain and conditional requests, before and after it remembers', async (t) => {
  const vary = { 'cache-control': 'max-age=60', vary: 'Accept-Language, X-Flag' }
  const entries = [
    stored({ 'accept-language': 'en' }, vary),
    stored({ 'accept-language': 'fr', 'x-flag': '' }, vary),
    stored({ 'accept-language': 'de' }, vary, 120), // stale: 120 s old, fresh for 60
    stored({ 'accept-language': 'it' }, { ...vary, 'cache-control': 'max-age=60, must-revalidate' })
  ]
  const requests: Array<Record<string, string>> = []
  const extras: Array<Record<string, string>> = [{}, { 'cache-control': 'no-cache' }, { 'cache-control': 'max-age=0' }, { pragma: 'no-cache' }, { 'cache-control': 'max-stale=600' }]
  for (const lang of [undefined, 'en', 'fr', 'de', 'it', 'es']) {
    for (const flag of [undefined, '', 'on']) {
      for (const extra of extras) {
        const h: Record<string, string> = { ...extra }
        if (lang !== undefined) h['accept-language'] = lang
        if (flag !== undefined) h['x-flag'] = flag
        requests.push(h)
      }
    }
  }
  // Twice over: the second pass runs with everything the first one remembered.
  for (const pass of [1, 2]) {
    for (const h of requests) {
      const req = policyRequest('GET', KEY, h, null)
      const got = select(entries, req).fresh?.entry ?? null
      const want = reference(entries, req)
      if (got !== want) t.fail(`pass ${pass}, ${JSON.stringify(h)}: got ${got?.body.toString() ?? 'none'}, library ${want?.body.toString() ?? 'none'}`)
    }
  }
  t.pass(`${requests.length} requests × 2 passes agree with the library`)
  // The cases that matter are there: a plain hit, the absent-versus-empty field told apart, a stale miss.
  t.ok(select(entries, policyRequest('GET', KEY, { 'accept-language': 'en' }, null)).fresh !== null)
  t.equal(select(entries, policyRequest('GET', KEY, { 'accept-language': 'fr' }, null)).fresh, null, 'X-Flag absent is not X-Flag empty')
  t.equal(select(entries, policyRequest('GET', KEY, { 'accept-language': 'de' }, null)).fresh, null, 'stale')
})

t.test('a remembered answer lasts until the entry goes stale, and no longer', async (t) => {
  const entry = stored({}, { 'cache-control': 'max-age=1' })
  const req = policyRequest('GET', KEY, {}, null)
  t.ok(select([entry], req).fresh !== null)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal(select([entry], req).fresh, null, 'stale after max-age, as the library says')
  t.equal(reference([entry], req), null)
})

t.test('a second plain request of the same variant does not ask the library again', async (t) => {
  const entry = stored({ accept: 'a' }, { 'cache-control': 'max-age=60', vary: 'Accept' })
  const original = CachePolicy.prototype.satisfiesWithoutRevalidation
  let asked = 0
  CachePolicy.prototype.satisfiesWithoutRevalidation = function (this: CachePolicy, req: CachePolicy.Request) {
    asked++
    return original.call(this, req)
  }
  t.teardown(() => { CachePolicy.prototype.satisfiesWithoutRevalidation = original })
  const plain = policyRequest('GET', KEY, { accept: 'a' }, null)
  t.ok(select([entry], plain).fresh !== null)
  t.ok(select([entry], plain).fresh !== null)
  t.equal(asked, 1, 'asked once')
  t.equal(select([entry], policyRequest('GET', KEY, { accept: 'b' }, null)).fresh, null, 'another variant')
  t.ok(select([entry], policyRequest('GET', KEY, { accept: 'a', 'cache-control': 'max-age=5' }, null)).fresh !== null)
  t.equal(asked, 3, 'another variant and a request with Cache-Control are asked about')
})
