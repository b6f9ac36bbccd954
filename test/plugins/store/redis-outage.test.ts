// The Redis store while its redis-server (our own, on a free port) is down, comes up, is killed or
// paused (docs/architecture.md#the-store; docs/reliability.md, FT-09/FT-10/FT-11): calls fail fast, ping says false, the
// gateway never crashes, and the same store works again once Redis is back.
import t, { type Test } from 'tap'
import { loadConfig } from '../../../lib/config.js'
import { commandTimeoutMs, openStore } from '../../../plugins/store/index.js'
import type { Store } from '../../../plugins/store/types.js'
import { rawCommand, startRedis } from '../../support/redis-server.js'
import { makeKey } from './contract.js'
import { freePort, sleep, until } from '../../support/basics.js'

const PASSWORD = 'outage-secret-7f3a'

function setup (port: number) {
  const config = loadConfig({
    ADMIN_PASSWORD: 'x',
    STORAGE: 'redis',
    REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${port}`,
    REDIS_KEY_PREFIX: 'gwoutage:'
  }, { dotenv: false })
  return { config, ...capturingLog() }
}

/** A store log that keeps its lines as `<level> <msg> <fields>`. */
function capturingLog () {
  const lines: string[] = []
  const log = {
    info: (obj: object, msg: string) => { lines.push(`info ${msg} ${JSON.stringify(obj)}`) },
    warn: (obj: object, msg: string) => { lines.push(`warn ${msg} ${JSON.stringify(obj)}`) }
  }
  return { lines, log }
}

/**
 * How late past the command timeout a call may settle: room for a busy 2-core machine, still far
 * below the seconds a queued or retried command would hang.
 */
const LATE = 1500

/** Resolves with how long the promise took to settle, and whether it rejected. */
async function timed (p: Promise<unknown>): Promise<{ ms: number, rejected: boolean }> {
  const start = performance.now()
  let rejected = false
  try { await p } catch { rejected = true }
  return { ms: performance.now() - start, rejected }
}

async function everyCallFailsFast (t: Test, store: Store, bound: number): Promise<void> {
  const calls: Record<string, () => Promise<unknown>> = {
    'keys.findByHash': () => store.keys.findByHash(makeKey().hash),
    'keys.create': () => store.keys.create(makeKey()),
    'keys.revoke': () => store.keys.revoke('some-id'),
    'buckets.take': () => store.buckets.take('client-1', 10, 60),
    'failures.reserve': () => store.failures.reserve('203.0.113.1', 10, 60_000)
  }
  for (const [name, call] of Object.entries(calls)) {
    const r = await timed(call())
    t.ok(r.rejected, `${name} rejects`)
    t.ok(r.ms < bound, `${name} settled in ${r.ms.toFixed(1)} ms (bound ${bound} ms)`)
  }
  const ping = await timed(store.ping().then((up) => { if (up) throw new Error('ping said true') }))
  t.notOk(ping.rejected, 'ping resolves false')
  t.ok(ping.ms < bound, `ping settled in ${ping.ms.toFixed(1)} ms`)
}

t.test('a store built while Redis is down fails fast, then uses Redis once it starts, without a rebuild', async (t) => {
  const port = await freePort()
  const { config, lines, log } = setup(port)
  const bound = commandTimeoutMs(config)
  const store = await openStore(config, { log, waitMs: 300 }) // as the plugin does at boot
  t.teardown(() => store.close())
  t.equal(store.kind, 'redis', 'opening the store does not fail while Redis is down')

  await everyCallFailsFast(t, store, bound)

  const redis = await startRedis({ port, args: ['--requirepass', PASSWORD] })
  t.teardown(() => redis.stop())
  t.ok(await until(() => store.ping(), 5000), 'ping is true again after Redis started')
  const key = makeKey()
  await store.keys.create(key)
  t.same(await store.keys.findByHash(key.hash), key)
  t.equal((await store.buckets.take('client-1', 10, 60)).allowed, true)

  // Its subscriber connected late too: a revocation by another instance still reaches it.
  const other = await openStore(config)
  t.teardown(() => other.close())
  const heard = new Promise<string>((resolve) => store.keys.onInvalidate(resolve))
  t.ok(await until(async () => {
    await other.keys.revoke(key.id)
    return await Promise.race([heard.then(() => true), sleep(200).then(() => false)])
  }, 5000), 'the late subscriber hears another instance\'s revocation')

  t.ok(lines.some((l) => l.startsWith('warn redis unavailable')), 'the outage was logged')
  t.ok(lines.some((l) => l.startsWith('info redis connection restored')), 'the recovery was logged')
  t.ok(lines.filter((l) => l.startsWith('warn')).length <= 4, `outage logged once per connection, not per retry: ${lines.length} lines`)
  t.notOk(lines.some((l) => l.includes(PASSWORD)), 'the password is never logged')
})

t.test('a SIGKILLed Redis makes calls fail fast, and a restarted one is used again', async (t) => {
  const redis = await startRedis({ args: ['--requirepass', PASSWORD] })
  t.teardown(() => redis.stop())
  const { config, log, lines } = setup(redis.port)
  const store = await openStore(config, { log })
  t.teardown(() => store.close())
  t.equal(await store.ping(), true)
  const key = makeKey()
  await store.keys.create(key)

  await redis.kill('SIGKILL')
  // The first call may be written before the client sees the socket close: it settles within the
  // command timeout; once the close is seen, every call is refused at once.
  const first = await timed(store.keys.findByHash(key.hash))
  t.ok(first.rejected, `first call after the kill rejects (${first.ms.toFixed(1)} ms)`)
  t.ok(first.ms < commandTimeoutMs(config) + LATE, 'within the command timeout')
  await everyCallFailsFast(t, store, commandTimeoutMs(config))

  await redis.restart()
  t.ok(await until(() => store.ping(), 5000), 'ping is true again after the restart')
  await store.keys.create(makeKey())
  t.notOk(lines.some((l) => l.includes(PASSWORD)), 'the password is never logged')
})

t.test('a paused Redis (SIGSTOP) makes calls fail by the command timeout, and works after SIGCONT', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'gwpause:' }, { dotenv: false })
  const store = await openStore(config)
  t.teardown(() => store.close())
  t.equal(await store.ping(), true)

  redis.pause()
  const stalled = await timed(store.buckets.take('client-1', 10, 60))
  t.ok(stalled.rejected, `a call to a paused Redis rejects (${stalled.ms.toFixed(1)} ms)`)
  t.ok(stalled.ms >= commandTimeoutMs(config) - 50, 'by the command timeout, not by a queue')
  t.ok(stalled.ms < commandTimeoutMs(config) + LATE, 'and no later')
  const ping = await timed(store.ping())
  t.ok(ping.ms < commandTimeoutMs(config) + LATE, `ping is bounded too (${ping.ms.toFixed(1)} ms)`)
  redis.resume()

  t.ok(await until(() => store.ping(), 5000), 'ping is true again after SIGCONT')
  t.equal((await store.buckets.take('client-2', 10, 60)).allowed, true)
})

t.test('a SUBSCRIBE Redis refuses (ACL without the channels) is logged and asked again until allowed', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const acl = async (rules: string): Promise<void> => {
    t.match(await rawCommand(redis.port, `ACL SETUSER gw ${rules}`, 2000), /^\+OK/, `ACL SETUSER gw ${rules}`)
  }
  // No channels from the start: the first SUBSCRIBE is refused.
  await acl('on >sub-secret ~* resetchannels +@all')
  const config = loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL: `redis://gw:sub-secret@127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: 'gwacl:' }, { dotenv: false })
  const { lines, log } = capturingLog()
  const store = await openStore(config, { log, waitMs: 2000 })
  t.teardown(() => store.close())
  t.ok(await until(() => lines.some((l) => l.includes('redis_subscription_refused')), 5000), 'the refusal is logged')
  const refused = lines.filter((l) => l.includes('redis_subscription_refused'))
  t.equal(refused.length, 1, 'once, for both change channels (keys, services)')
  t.match(refused[0], /NOPERM/)
  t.notOk(lines.some((l) => l.startsWith('warn redis unavailable')), 'not reported as an outage: Redis is up')
  t.equal(await store.ping(), true, 'commands still run')

  let heard = 0
  store.keys.onInvalidate(() => { heard++ })
  await acl('allchannels')
  t.ok(await until(() => lines.some((l) => l.includes('redis_subscription_restored')), 8000), 'subscribed within one retry period')
  t.ok(await until(async () => /\bsub=2\b/.test(await rawCommand(redis.port, 'CLIENT LIST', 2000) ?? ''), 5000), 'the subscriber holds both channels')
  const before = heard
  await rawCommand(redis.port, 'PUBLISH gwacl:invalidate somehash', 2000)
  t.ok(await until(() => heard > before, 2000), 'a published revocation is heard')
})
