// The rate limiter on Redis with leases (docs/performance.md#the-redis-bucket-lease), end to end:
// two gateways listening on real sockets share one Redis (own key prefix), a real backend counts
// what was admitted. RATE_LIMIT_RPM = 1: nothing refills while a test runs, so counts are exact.
import { Agent } from 'node:http'
import t, { type Test } from 'tap'
import { listen, routesFile, uniquePrefix } from '../support/app.js'
import { startBackend } from '../support/backends.js'
import { until } from '../support/basics.js'
import { admin, createKey, http, nextIp, type HttpResponse } from '../support/http.js'
import { ADMIN_PASSWORD } from '../support/gateway-process.js'
import type { RedisBuckets } from '../../plugins/store/buckets-redis.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

async function twoGateways (t: Test, burst: number, auth = 'optional'): Promise<{ ports: number[], buckets: RedisBuckets[], hits: () => number }> {
  const backend = await startBackend()
  t.teardown(() => backend.close())
  const env = {
    STORAGE: 'redis',
    REDIS_URL,
    REDIS_KEY_PREFIX: uniquePrefix(),
    RATE_LIMIT_BURST: String(burst),
    RATE_LIMIT_RPM: '1',
    ADMIN_PASSWORD,
    ROUTES_FILE: routesFile(t, [{ name: 'echo', prefix: '/api/echo', auth, backends: [{ url: backend.url }] }])
  }
  const gateways = [await listen(t, env), await listen(t, env)]
  return {
    ports: gateways.map((g) => Number(new URL(g.url).port)),
    buckets: gateways.map((g) => g.app.store.buckets as RedisBuckets),
    hits: () => backend.hits
  }
}

/** n requests at once from one client address to each port (on `agents[i]`'s open connections, if given). */
async function wave (ports: number[], address: string, n: number, headers: Record<string, string> = {}, agents: Agent[] = []): Promise<HttpResponse[]> {
  return (await Promise.all(ports.map(async (port, p) =>
    await Promise.all(Array.from({ length: n }, async (_, i) => await http(port, `/api/echo/${i}`, { localAddress: address, headers, agent: agents[p] })))))).flat()
}

/**
 * Runs `during` while looking every 20 ms which instances hold a lease. A lease unused for 250 ms
 * is given back, and on a loaded machine the responses of a wave can take longer than that to
 * arrive: a look after the wave would miss leases that served it.
 */
async function watchingLeases<T> (buckets: RedisBuckets[], held: boolean[], during: () => Promise<T>): Promise<T> {
  const look = (): void => { buckets.forEach((b, i) => { if ((b.leases?.size ?? 0) > 0) held[i] = true }) }
  const timer = setInterval(look, 20)
  try {
    return await during()
  } finally {
    clearInterval(timer)
    look()
  }
}

/** What is wrong with a response's rate-limit fields, if anything. */
function fieldProblem (res: HttpResponse, burst: number): string | null {
  if (res.status === 429) return res.headers['retry-after'] !== undefined && Number(res.headers['retry-after']) >= 1 ? null : '429 without Retry-After'
  if (res.status !== 200) return `status ${res.status}`
  const remaining = Number(res.headers['x-ratelimit-remaining'])
  if (res.headers['x-ratelimit-limit'] !== String(burst)) return `X-RateLimit-Limit ${String(res.headers['x-ratelimit-limit'])}`
  if (!Number.isInteger(remaining) || remaining < 0 || remaining >= burst) return `X-RateLimit-Remaining ${String(res.headers['x-ratelimit-remaining'])}`
  if (!String(res.headers.ratelimit).startsWith(`"default";r=${remaining};t=`)) return `RateLimit ${String(res.headers.ratelimit)}`
  return null
}

t.test('40 concurrent requests on 2 instances with burst 10 admit exactly 10', async (t) => {
  const { ports, hits } = await twoGateways(t, 10)
  const responses = await wave(ports, nextIp(), 20)
  t.equal(responses.filter((r) => r.status === 200).length, 10)
  t.equal(responses.filter((r) => r.status === 429).length, 30)
  t.same(responses.map((r) => fieldProblem(r, 10)).filter((p) => p !== null), [], 'every answer carries meaningful fields')
  t.equal(hits(), 10, 'exactly 10 reached the backend')
})

t.test('a busy bucket on 2 instances: served from leases, never more than the bucket, exactly the bucket in the end', async (t) => {
  const burst = 300
  const { ports, buckets, hits } = await twoGateways(t, burst)
  const address = nextIp()
  let admitted = 0
  const held = buckets.map(() => false)
  const problems = new Set<string>()
  for (let round = 0; round < 40; round++) {
    const responses = await watchingLeases(buckets, held, async () => await wave(ports, address, 15))
    for (const r of responses) { const p = fieldProblem(r, burst); if (p !== null) problems.add(p) }
    const got = responses.filter((r) => r.status === 200).length
    admitted += got
    if (got === 0) break
  }
  t.ok(held.some(Boolean), 'the instances leased tokens')
  t.ok(admitted <= burst, `${admitted} admitted, never more than ${burst}`)
  t.same([...problems], [], 'every answer carries meaningful fields')
  // What leases held when the traffic stopped goes back once they are idle.
  t.ok(await until(() => buckets.every((b) => b.leases?.size === 0), 3000), 'idle leases given back')
  for (;;) {
    const got = (await wave(ports, address, 5)).filter((r) => r.status === 200).length
    admitted += got
    if (got === 0) break
  }
  t.equal(admitted, burst, 'exactly the bucket was admitted')
  t.equal(hits(), burst, 'and exactly that reached the backend')
})

t.test('a revoked key is refused on every instance although its bucket is leased', async (t) => {
  const { ports, buckets } = await twoGateways(t, 10, 'required')
  // A bucket the waves below cannot empty (20 × 30 requests at most): every one is admitted.
  const key = await createKey(ports[0], { name: 'leased', burst: 2000, rate_limit: 1 })
  const headers = { 'x-api-key': key.raw }
  const address = nextIp()
  const held = buckets.map(() => false)
  // Each wave goes out on connections opened by the first, all in one turn, so both instances see
  // its requests together (a busy bucket) however starved the machine: new connections arrive one
  // at a time there, each take answered before the next comes, and such a bucket is not leased.
  const agents = ports.map(() => new Agent({ keepAlive: true, maxSockets: 15 }))
  t.teardown(() => { for (const agent of agents) agent.destroy() })
  for (let round = 0; round < 20 && !held.every(Boolean); round++) {
    const statuses = await watchingLeases(buckets, held, async () => (await wave(ports, address, 15, headers, agents)).map((r) => r.status))
    t.same([...new Set(statuses)], [200], 'admitted while valid')
  }
  t.ok(held.every(Boolean), 'both instances leased the key\'s bucket')
  // Keep the leases busy up to the revocation (idle ones go back after 250 ms).
  await wave(ports, address, 15, headers, agents)
  t.equal((await admin(ports[0], 'POST', `/admin/apikeys/${key.id}/revoke`)).status, 200)
  t.ok(await until(async () => (await wave([ports[1]], address, 1, headers))[0].status === 401, 5000), 'the other instance refuses it once the revocation arrives')
  const after = await wave(ports, address, 10, headers)
  t.same([...new Set(after.map((r) => r.status))], [401], 'and no instance admits it again, leased tokens or not')
})
