// The key-set policy itself (plugins/jwt/key-sets.ts with the verifier), against a real local
// IdP over real sockets, with the policy's periods shortened so time-driven behaviour (background
// refresh from Cache-Control, removal of an old key, the unknown-kid throttle, backoff) fits in a
// test. The gateway-level cases with the real periods are in key-sets.test.ts.
import t from 'tap'
import pino from 'pino'
import { SignJWT } from 'jose'
import { jwksDispatcher, KeySet, type FetchOutcome, type KeySetPolicy } from '../../../plugins/jwt/key-sets.js'
import { TokenVerifier, type Verdict, type VerifyOutcome } from '../../../plugins/jwt/verifier.js'
import { type Teardownable, until } from '../../support/basics.js'
import { idp } from '../../support/jwt.js'
import type { Idp } from '../../support/idp.js'

const log = pino({ level: 'silent' })

function setup (t: Teardownable, i: Idp, policy: Partial<KeySetPolicy>, jwksUrl: string | null = i.jwksUrl) {
  const dispatcher = jwksDispatcher()
  const fetches: FetchOutcome[] = []
  const outcomes: VerifyOutcome[] = []
  const keys = new KeySet({ issuer: i.issuer, jwksUrl, dispatcher, log, onFetch: (_iss, o) => fetches.push(o), policy })
  const verifier = new TokenVerifier([{ config: { issuer: i.issuer, jwksUrl, audiences: null, algorithms: ['RS256', 'ES256', 'EdDSA'] }, keys }], {
    clockToleranceSeconds: 0,
    consumerClaim: 'sub',
    forwardToken: true,
    onOutcome: (o) => outcomes.push(o)
  })
  t.teardown(async () => {
    keys.close()
    await dispatcher.close()
  })
  const check = async (token: string): Promise<Verdict> => await verifier.check(token, Date.now())
  return { keys, verifier, fetches, outcomes, check }
}

t.test('background refresh follows the JWKS answer\'s Cache-Control max-age', async (t) => {
  const i = await idp(t)
  i.cacheControl = 'public, max-age=1'
  const { keys } = setup(t, i, { minRefreshMs: 100 })
  keys.start()
  t.ok(await until(() => i.jwksHits >= 3, 10_000, 20), 'refetched about every second')
  t.ok(await until(() => keys.pending === null, 5000, 10))
  i.cacheControl = null
  await keys.refresh()
  const hits = i.jwksHits
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.equal(i.jwksHits, hits, 'without Cache-Control: the 300 s default, no refetch in 1.5 s')
})

t.test('an old key removed by the IdP stops verifying once the set is refreshed, cached tokens included', async (t) => {
  const i = await idp(t, ['RS256'])
  const { keys, check } = setup(t, i, { kidRefetchMs: 60_000 })
  await keys.refresh()
  const old = i.keys.get(i.published[0])
  const token = await i.sign({ key: old })
  t.equal((await check(token)).ok, true, 'verified with the old key')
  const fresh = await i.addKey('EdDSA')
  t.equal((await check(await i.sign({ key: fresh }))).ok, true, 'the new key, first request')
  t.equal((await check(token)).ok, true, 'old and new served: the old token still verifies')
  i.published = [fresh.kid]
  await keys.refresh()
  const after = await check(token)
  t.equal(after.ok, false, 'old key removed: the cached token is verified again and refused')
  t.equal(after.ok ? null : after.outcome, 'unknown_kid')
})

t.test('unknown kids refetch at most once per period; a fetch in flight is shared', async (t) => {
  const i = await idp(t)
  const { keys, check, outcomes } = setup(t, i, { kidRefetchMs: 1000 })
  await keys.refresh()
  const base = i.jwksHits
  const tokens = await Promise.all(Array.from({ length: 200 }, (_, n) => i.sign({ kid: `k${n}` })))
  const verdicts = await Promise.all(tokens.map(check))
  t.ok(verdicts.every((v) => !v.ok), 'all refused')
  t.equal(i.jwksHits - base, 1, 'one fetch for 200 unknown kids at once')
  t.equal(outcomes.filter((o) => o === 'unknown_kid').length, 200)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await check(await i.sign({ kid: 'later' }))
  t.equal(i.jwksHits - base, 2, 'once the period passed, one more')
})

t.test('never fetched: backoff up to the cap, Retry-After follows it, first success ends it', async (t) => {
  const i = await idp(t)
  i.setDown(true)
  const { keys, fetches, check } = setup(t, i, { firstRetryMs: 50, maxRetryMs: 200 }, null)
  keys.start()
  t.ok(await until(() => fetches.length >= 5, 10_000, 10), 'retried again and again')
  t.equal(keys.retryAfterSeconds(), 1, 'Retry-After rounds up to 1 s under a short cap')
  const v = await check(await i.sign())
  t.equal(v.ok ? null : v.outcome, 'no_keys')
  i.setDown(false)
  t.ok(await until(() => keys.keys !== null, 10_000, 10), 'fetched once the IdP is up')
  t.equal((await check(await i.sign())).ok, true)
  t.ok(fetches.includes('ok'))
  t.ok(fetches.every((f) => f === 'unreachable' || f === 'ok'), 'outage fetches counted as unreachable')
})

t.test('a discovery document naming another issuer, and a JWKS that is not one, are refused', async (t) => {
  const i = await idp(t)
  const missing = setup(t, { ...i, issuer: `${i.issuer}/other` } as Idp, { firstRetryMs: 10_000 }, null)
  t.equal(await missing.keys.refresh(), false)
  t.same(missing.fetches, ['bad_status'], 'no discovery document at <issuer>/other')
  // Same server, but `iss` differs by a trailing slash: discovery requires an exact match.
  const wrong = setup(t, { ...i, issuer: `${i.issuer}/` } as Idp, { firstRetryMs: 10_000 }, null)
  t.equal(await wrong.keys.refresh(), false)
  t.same(wrong.fetches, ['invalid'], 'a discovery document naming another issuer')
  const notJwks = setup(t, i, { firstRetryMs: 10_000 }, `${i.issuer}/.well-known/openid-configuration`)
  t.equal(await notJwks.keys.refresh(), false)
  t.same(notJwks.fetches, ['invalid'], 'a JSON document without keys is invalid')
})

t.test('a token without kid is tried against every key that fits its alg; one without exp is accepted', async (t) => {
  const i = await idp(t, ['RS256', 'RS256', 'EdDSA'])
  const { keys, check } = setup(t, i, {})
  await keys.refresh()
  const second = i.keys.get(i.published[1])
  const noKid = async (claims: Record<string, unknown> = {}) => await new SignJWT({ iss: i.issuer, sub: 'no-kid', exp: Math.floor(Date.now() / 1000) + 60, ...claims })
    .setProtectedHeader({ alg: 'RS256' }).sign(second?.privateKey as never)
  const ok = await check(await noKid())
  t.equal(ok.ok, true, 'the second of two RS256 keys verified it')
  const tampered = (await noKid({ sub: 'x' })).replace(/\.[^.]+$/, '.' + Buffer.from('nope').toString('base64url'))
  const bad = await check(tampered)
  t.equal(bad.ok ? null : bad.outcome, 'bad_signature', 'no key verifies it')
  const forever = await check(await i.sign({ claims: { exp: undefined } }))
  t.equal(forever.ok, true, 'no exp: accepted')
  t.ok(forever.ok && forever.expiresAtMs > Date.now() && forever.expiresAtMs <= Date.now() + 300_000, 'and kept for 5 minutes at most')
})

t.test('a JWKS behind a redirect is followed; an oversized or non-JSON answer is invalid', async (t) => {
  const i = await idp(t)
  const { createServer } = await import('node:http')
  const big = 'x'.repeat(2048)
  const server = createServer((req, res) => {
    if (req.url === '/moved') res.writeHead(302, { location: i.jwksUrl }).end()
    else if (req.url === '/big') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [], pad: big }))
    else res.writeHead(200, { 'content-type': 'text/html' }).end('<html>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const moved = setup(t, i, {}, `${base}/moved`)
  t.equal(await moved.keys.refresh(), true, 'redirect followed')
  t.equal((await moved.check(await i.sign())).ok, true)
  const oversized = setup(t, i, { maxBytes: 1024, firstRetryMs: 10_000 }, `${base}/big`)
  t.equal(await oversized.keys.refresh(), false)
  t.same(oversized.fetches, ['invalid'], 'over maxBytes')
  const html = setup(t, i, { firstRetryMs: 10_000 }, `${base}/html`)
  t.equal(await html.keys.refresh(), false)
  t.same(html.fetches, ['invalid'], 'not JSON')
})

t.test('a repeated token, valid or refused, costs no second signature check until the keys change', async (t) => {
  const jose = await import('jose')
  let verifications = 0
  const { TokenVerifier: Counting } = await t.mockImport<typeof import('../../../plugins/jwt/verifier.js')>('../../../plugins/jwt/verifier.js', {
    jose: { ...jose, jwtVerify: async (...args: Parameters<typeof jose.jwtVerify>) => { verifications++; return await jose.jwtVerify(...args) } }
  })
  const i = await idp(t, ['ES256'])
  const dispatcher = jwksDispatcher()
  const keys = new KeySet({ issuer: i.issuer, jwksUrl: i.jwksUrl, dispatcher, log, onFetch: () => {}, policy: {} })
  t.teardown(async () => { keys.close(); await dispatcher.close() })
  await keys.refresh()
  const outcomes: string[] = []
  const verifier = new Counting([{ config: { issuer: i.issuer, jwksUrl: i.jwksUrl, audiences: null, algorithms: ['ES256'] }, keys }], {
    clockToleranceSeconds: 0, consumerClaim: 'sub', forwardToken: true, onOutcome: (o) => outcomes.push(o)
  })
  const good = await i.sign()
  const expired = await i.sign({ claims: { exp: 1000 } })
  for (let n = 0; n < 5; n++) {
    t.equal((await verifier.check(good, Date.now())).ok, true)
    t.equal((await verifier.check(expired, Date.now())).ok, false)
  }
  t.equal(verifications, 2, 'one signature check per token')
  t.same(outcomes, ['valid', ...Array(5).fill('expired')], 'refusals are counted each time, a cached valid token is not')
  await i.addKey('ES256')
  await keys.refresh()
  await verifier.check(good, Date.now())
  await verifier.check(expired, Date.now())
  t.equal(verifications, 4, 'new keys: both verified again')
})
