import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import Fastify from 'fastify'
import t from 'tap'
import { loadConfig } from '../../../lib/config.js'
import storePlugin, { createStore } from '../../../plugins/store/index.js'
import { MemoryFailureCounter, SqliteKeyStore } from '../../../plugins/store/embedded.js'
import { tempDir } from '../../support/basics.js'
import { makeKey, storeContract } from './contract.js'
import configPlugin from '../../../plugins/config.js'

const configFor = (dataDir: string) => loadConfig({ ADMIN_PASSWORD: 'x', STORAGE: 'embedded', DATA_DIR: dataDir }, { dotenv: false })

storeContract(t, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-store-'))
  const store = createStore(configFor(dir))
  return {
    store,
    async cleanup () {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}, { shared: false })

t.test('keys survive closing and reopening the database file', async (t) => {
  const dir = tempDir(t)
  const first = createStore(configFor(dir))
  const kept = makeKey({ services: ['auth-service'] })
  const revoked = makeKey()
  await first.keys.create(kept)
  await first.keys.create(revoked)
  await first.keys.revoke(revoked.id)
  await first.close()

  const second = createStore(configFor(dir))
  t.teardown(() => second.close())
  t.same(await second.keys.findByHash(kept.hash), kept)
  t.equal((await second.keys.get(revoked.id))?.active, false)
})

t.test('the database is a WAL file with synchronous=FULL, under DATA_DIR (created when missing)', async (t) => {
  const dir = join(tempDir(t), 'nested', 'data')
  const keys = new SqliteKeyStore({ dataDir: dir })
  t.teardown(() => keys.close())
  t.equal(keys.file, join(dir, 'gateway.db'))
  const db = new DatabaseSync(keys.file)
  t.teardown(() => db.close())
  t.same(db.prepare('PRAGMA journal_mode').get(), { journal_mode: 'wal' })
  t.same(db.prepare('PRAGMA integrity_check').get(), { integrity_check: 'ok' })
})

t.test('services are stored as JSON text (NULL when absent) and active as an integer', async (t) => {
  const dir = tempDir(t)
  const keys = new SqliteKeyStore({ dataDir: dir })
  t.teardown(() => keys.close())
  const key = makeKey({ services: null })
  await keys.create(key)
  const db = new DatabaseSync(keys.file)
  t.teardown(() => db.close())
  t.same(db.prepare('SELECT services, active FROM api_keys WHERE id = ?').get(key.id), { services: null, active: 1 })
})

t.test('the memory failure counter stays bounded, dropping the oldest windows first', async (t) => {
  const counter = new MemoryFailureCounter({ maxEntries: 3 })
  for (const id of ['a', 'b', 'c', 'd']) await counter.reserve(id, 10, 60_000)
  t.equal((await counter.peek('a')).count, 0, 'the oldest was dropped')
  for (const id of ['b', 'c', 'd']) t.equal((await counter.peek(id)).count, 1)
})

t.test('the store plugin decorates fastify.store from fastify.config and closes it with the app', async (t) => {
  const dir = tempDir(t)
  const app = Fastify()
  await app.register(configPlugin, { config: configFor(dir) })
  await app.register(storePlugin)
  await app.ready()
  t.equal(app.store.kind, 'embedded')
  t.equal(await app.store.ping(), true)
  await app.close()
  t.equal(await app.store.ping(), false)
})

t.test('an unusable DATA_DIR fails the boot', async (t) => {
  const file = join(tempDir(t), 'not-a-dir')
  writeFileSync(file, 'a regular file where the directory should be')
  t.throws(() => createStore(configFor(file)))
})
