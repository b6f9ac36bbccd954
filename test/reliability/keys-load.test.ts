// Load (docs/reliability.md), API keys across instances: LD-06 (concurrent create/revoke/list over
// three gateways on one Redis, checked while it runs) and LD-07 (revocation under a warm cache).
// docs/admin-api.md#api-keys: revocation takes effect on every instance within 1 second.
import t from 'tap'
import { admin, createKey, http, nextIp, type CreatedKey } from '../support/http.js'
import { threeGatewaysOnRedis } from '../support/redis-env.js'
import { sleep } from '../support/basics.js'

t.setTimeout(5 * 60_000)
const VISIBLE_MS = 1000

const { gws } = await threeGatewaysOnRedis(t)

/** A small deterministic PRNG so a failing run can be replayed. */
function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 }
}

t.test('LD-06 concurrent create/revoke/list over three instances stays consistent', async (t) => {
  interface Acked { key: CreatedKey, revokedAt: number | null }
  const acked: Acked[] = []
  const failures: string[] = []
  let creates = 0
  let revokes = 0
  let lists = 0
  let op = 0
  const worker = async (w: number): Promise<void> => {
    const rand = rng(1000 + w)
    const mine: Acked[] = []
    for (let i = 0; i < 200; i++) {
      const port = gws[op++ % 3].port
      const r = rand()
      const live = mine.filter((a) => a.revokedAt === null)
      if (r < 0.6 || (r < 0.9 && live.length === 0)) {
        const res = await admin(port, 'POST', '/admin/apikeys', { name: `ld06-${w}-${i}` }, nextIp())
        if (res.status === 201) {
          const data = res.json().data
          const a = { key: { id: data.api_key.id, raw: data.raw_key, record: data.api_key, response: res }, revokedAt: null }
          mine.push(a)
          acked.push(a)
          creates++
        } else failures.push(`create ${res.status}`)
      } else if (r < 0.9) {
        const victim = live[Math.floor(rand() * live.length)]
        const res = await admin(port, 'POST', `/admin/apikeys/${victim.key.id}/revoke`, undefined, nextIp())
        if (res.status === 200 || res.status === 204) { victim.revokedAt = Date.now(); revokes++ } else failures.push(`revoke ${res.status}`)
      } else {
        const res = await admin(port, 'GET', '/admin/apikeys', undefined, nextIp())
        if (res.status === 200) lists++
        else failures.push(`list ${res.status}`)
      }
    }
  }

  // The checker: a revoked key must be refused everywhere once VISIBLE_MS passed since the
  // revoke was acknowledged; a live key must work everywhere.
  const state = { running: true }
  const violations: string[] = []
  let checks = 0
  const checker = (async () => {
    const rand = rng(7)
    while (state.running) {
      const a = acked[Math.floor(rand() * acked.length)]
      if (a !== undefined) {
        const revokedAt = a.revokedAt
        const results = await Promise.all(gws.map(async (g) => (await http(g.port, '/api/echo/ld06', { headers: { 'x-api-key': a.key.raw }, localAddress: nextIp() })).status))
        const settled = revokedAt !== null && Date.now() - revokedAt > VISIBLE_MS + 100
        if (settled && results.some((s) => s !== 401)) violations.push(`revoked ${Date.now() - (revokedAt ?? 0)} ms ago: ${results.join(',')}`)
        if (revokedAt === null && a.revokedAt === null && results.some((s) => s !== 200 && s !== 429)) violations.push(`live key: ${results.join(',')}`)
        checks++
      }
      await sleep(20)
    }
  })()
  await Promise.all(Array.from({ length: 16 }, async (_, w) => await worker(w)))
  await sleep(VISIBLE_MS + 200)
  state.running = false
  await checker
  t.comment(`${creates} creates, ${revokes} revokes, ${lists} lists, ${checks} checks`)
  t.same(failures.slice(0, 10), [], 'every admin operation succeeded (no 5xx)')
  t.same(violations.slice(0, 10), [], 'revocations visible on every instance within 1 s; live keys work everywhere')

  const list = (await admin(gws[0].port, 'GET', '/admin/apikeys')).json().data as Array<{ id: string, name: string, active: boolean }>
  const mine = list.filter((k) => k.name.startsWith('ld06-'))
  t.equal(mine.length, creates, 'listed keys = acknowledged creates')
  t.equal(mine.filter((k) => k.active).length, creates - revokes, 'active keys = acknowledged creates − acknowledged revokes')
  t.equal(new Set(mine.map((k) => k.id)).size, mine.length, 'no duplicate ids')
  t.ok(acked.every((a) => mine.filter((k) => k.id === a.key.id).length === 1), 'each acknowledged create appears exactly once')
  let refused = 0
  for (const a of acked.filter((x) => x.revokedAt !== null)) {
    const statuses = await Promise.all(gws.map(async (g) => (await http(g.port, '/api/echo/final', { headers: { 'x-api-key': a.key.raw }, localAddress: nextIp() })).status))
    if (statuses.every((s) => s === 401)) refused++
  }
  t.equal(refused, revokes, 'every revoked key is refused on all three instances')
})

t.test('LD-07 a revoked key stops working on a warm instance within 1 s', async (t) => {
  const k = await createKey(gws[0].port, { name: 'ld07', rate_limit: 600000, burst: 10000 }, nextIp())
  for (let i = 0; i < 10; i++) {
    t.equal((await http(gws[0].port, '/api/echo/warm', { headers: { 'x-api-key': k.raw } })).status, 200, `use ${i + 1} on G1`)
  }
  const res = await admin(gws[1].port, 'POST', `/admin/apikeys/${k.id}/revoke`, undefined, nextIp())
  t.equal(res.status, 200, 'revoked through G2')
  const revokedAt = Date.now()
  const polls: Array<[number, number]> = []
  while (Date.now() - revokedAt < 2000) {
    const r = await http(gws[0].port, '/api/echo/poll', { headers: { 'x-api-key': k.raw } })
    polls.push([Date.now() - revokedAt, r.status])
    await sleep(50)
  }
  const first401 = polls.find(([, s]) => s === 401)?.[0]
  t.ok(first401 !== undefined && first401 <= VISIBLE_MS, `401 on G1 within 1 s (after ${first401} ms)`)
  const late = polls.filter(([ms, s]) => ms > VISIBLE_MS + 100 && s === 200)
  t.same(late, [], 'never 200 after 1 s + 100 ms')
  t.ok(polls.every(([, s]) => s === 200 || s === 401), 'only 200 or 401 while polling')
})
