// The Redis store against the real Redis at REDIS_URL (default redis://127.0.0.1:6379). Every
// store gets its own prefix; its keys are deleted afterwards.
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'
import { loadConfig } from '../../../lib/config.js'
import storePlugin, { openStore } from '../../../plugins/store/index.js'
import type { Store } from '../../../plugins/store/types.js'
import { makeKey, sharedStores, storeContract } from './contract.js'
import configPlugin from '../../../plugins/config.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const admin = new Redis(REDIS_URL, { lazyConnect: true })
t.before(() => admin.connect())
t.teardown(() => admin.quit())

const newPrefix = () => `gwtest:${randomBytes(4).toString('hex')}:`
const configFor = (prefix: string, env: Record<string, string> = {}) =>
  loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: prefix, ...env }, { dotenv: false })

const open = async (prefix: string, env?: Record<string, string>): Promise<Store> => await openStore(configFor(prefix, env))

async function keysUnder (prefix: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    found.push(...batch)
  } while (cursor !== '0')
  return found
}

async function deleteKeysUnder (prefix: string): Promise<void> {
  const keys = await keysUnder(prefix)
  if (keys.length > 0) await admin.del(...keys)
}

storeContract(t, async () => {
  const prefix = newPrefix()
  return await sharedStores(open, prefix, () => deleteKeysUnder(prefix))
}, { shared: true })

t.test('every key lives under REDIS_KEY_PREFIX, API-key data in the one {keys} slot', async (t) => {
  const prefix = newPrefix()
  const store = await open(prefix)
  t.teardown(async () => { await store.close(); await deleteKeysUnder(prefix) })
  const key = makeKey()
  await store.keys.create(key)
  await store.failures.reserve('203.0.113.9', 10, 60_000)
  await store.buckets.take('bucket-1', 5, 60)
  const keys = await keysUnder(prefix)
  t.ok(keys.length >= 4, keys.join(' '))
  const data = keys.filter((k) => k.startsWith(`${prefix}{keys}:`))
  t.same(data.sort(), [`${prefix}{keys}:all`, `${prefix}{keys}:h:${key.hash}`, `${prefix}{keys}:id:${key.id}`].sort())
  t.ok(keys.includes(`${prefix}fail:203.0.113.9`))
  t.ok(await admin.pttl(`${prefix}fail:203.0.113.9`) > 0, 'failure windows expire')
})

t.test('a revocation reaches another instance that only subscribed after the first one wrote', async (t) => {
  const prefix = newPrefix()
  const a = await open(prefix)
  const b = await open(prefix)
  t.teardown(async () => { await a.close(); await b.close(); await deleteKeysUnder(prefix) })
  const key = makeKey()
  await a.keys.create(key)
  const heard = new Promise<string>((resolve) => b.keys.onInvalidate(resolve))
  await a.keys.delete(key.id)
  t.equal(await heard, key.hash)
})

t.test('stores with different prefixes on one Redis share nothing', async (t) => {
  const p1 = newPrefix()
  const p2 = newPrefix()
  const a = await open(p1)
  const b = await open(p2)
  t.teardown(async () => { await a.close(); await b.close(); await deleteKeysUnder(p1); await deleteKeysUnder(p2) })
  const heard: string[] = []
  b.keys.onInvalidate((h) => heard.push(h))
  const key = makeKey()
  await a.keys.create(key)
  t.equal(await b.keys.findByHash(key.hash), null)
  t.same(await b.keys.list(), [])
  await a.keys.revoke(key.id)
  await b.keys.create(makeKey()) // one round trip on b: a message published before it has arrived
  t.same(heard, [])
})

t.test('the store plugin connects to REDIS_URL and closes both connections with the app', async (t) => {
  const prefix = newPrefix()
  const app = Fastify()
  await app.register(configPlugin, { config: configFor(prefix) })
  await app.register(storePlugin)
  await app.ready()
  t.teardown(() => deleteKeysUnder(prefix))
  t.equal(app.store.kind, 'redis')
  t.equal(await app.store.ping(), true)
  const named = async () => (await admin.client('LIST') as string).split('\n')
    .filter((line) => line.includes(` name=${prefix}commands `) || line.includes(` name=${prefix}subscriber `)).length
  t.equal(await named(), 2, 'a command connection and a subscriber, named after the prefix')
  await app.close()
  t.equal(await app.store.ping(), false)
  await t.rejects(app.store.keys.get('x'), 'no command runs after close')
  let left = 2
  for (let i = 0; i < 100 && left > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    left = await named()
  }
  t.equal(left, 0, 'both connections closed')
})

t.test('REDIS_HOST/REDIS_PORT/REDIS_DB without REDIS_URL connect too', async (t) => {
  const url = new URL(REDIS_URL)
  const prefix = newPrefix()
  const store = await open(prefix, { REDIS_URL: '', REDIS_HOST: url.hostname, REDIS_PORT: url.port || '6379', REDIS_DB: '0' })
  t.teardown(async () => { await store.close(); await deleteKeysUnder(prefix) })
  t.equal(await store.ping(), true)
})
