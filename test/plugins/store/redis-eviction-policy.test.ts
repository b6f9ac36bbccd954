// Redis's maxmemory-policy (docs/architecture.md#the-store): read at start and on every reconnect; a policy that can evict
// the gateway's API keys (allkeys-*) is a warning in the log and in /ready's body. A Redis that
// refuses CONFIG is tolerated. Each case runs its own redis-server.
import t from 'tap'
import { Writable } from 'node:stream'
import { REDACT, buildApp } from '../../../src/app.js'
import { testConfig, uniquePrefix } from '../../support/app.js'
import { rawCommand, startRedis } from '../../support/redis-server.js'
import { until } from '../../support/basics.js'

type Teardownable = Parameters<typeof testConfig>[0]

async function gateway (t: Teardownable, url: string) {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l))
      cb()
    }
  })
  const app = await buildApp(testConfig(t, { STORAGE: 'redis', REDIS_URL: url, REDIS_KEY_PREFIX: uniquePrefix(), LOG_LEVEL: 'debug' }),
    { logger: { level: 'debug', stream, redact: { paths: REDACT, censor: '[REDACTED]' } } })
  t.teardown(() => app.close())
  await app.ready()
  return { app, lines }
}

const policyWarnings = (lines: Array<Record<string, unknown>>) =>
  lines.filter((l) => l.level === 40 && /maxmemory-policy/.test(String(l.msg)) && /noeviction/.test(String(l.msg)))

t.test('allkeys-lru at start: a warning naming maxmemory-policy and noeviction, also in /ready', async (t) => {
  const redis = await startRedis({ args: ['--maxmemory-policy', 'allkeys-lru'] })
  t.teardown(() => redis.stop())
  const { app, lines } = await gateway(t, redis.url)
  t.ok(await until(() => policyWarnings(lines).length > 0), 'warned in the log')
  t.match(policyWarnings(lines)[0].msg, /allkeys-lru/)
  const ready = await app.inject('/ready')
  t.equal(ready.statusCode, 200, 'still ready: the keys are readable')
  const warnings = ready.json().store.warnings as string[]
  t.equal(warnings.length, 1)
  t.match(warnings[0], /maxmemory-policy.*allkeys-lru.*noeviction/)
})

t.test('noeviction is fine; a policy changed to allkeys-random is noticed on the next reconnect', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { app, lines } = await gateway(t, redis.url)
  t.same((await app.inject('/ready')).json().store, { kind: 'redis', status: 'up' }, 'no warnings')
  t.equal(policyWarnings(lines).length, 0)
  await rawCommand(redis.port, 'CONFIG SET maxmemory-policy allkeys-random')
  // Drop every connection of the gateway: it reconnects by itself.
  await rawCommand(redis.port, 'CLIENT KILL TYPE normal SKIPME yes')
  t.ok(await until(() => policyWarnings(lines).length > 0), 'warned after the reconnect')
  t.ok(await until(async () => ((await app.inject('/ready')).json().store.warnings ?? []).length === 1), 'and /ready shows it')
  t.match(policyWarnings(lines)[0].msg, /allkeys-random/)
})

t.test('a Redis that refuses CONFIG is tolerated: a debug line, no warning, ready', async (t) => {
  const redis = await startRedis({ args: ['--rename-command', 'CONFIG', '""'] })
  t.teardown(() => redis.stop())
  const { app, lines } = await gateway(t, redis.url)
  t.ok(await until(() => lines.some((l) => l.level === 20 && /maxmemory-policy/.test(String(l.msg)))), 'a debug line says it was not checked')
  const ready = await app.inject('/ready')
  t.equal(ready.statusCode, 200)
  t.same(ready.json().store, { kind: 'redis', status: 'up' })
  t.equal(policyWarnings(lines).length, 0)
})
