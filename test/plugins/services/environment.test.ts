// The default services keep following AUTH_SERVICE_URL / USER_SERVICE_URL after the store was
// seeded: a restart with a changed variable moves a default service nobody changed through the
// admin API, and leaves (with a warning naming the variable) one that was changed there. Gateways
// are built on the same store one after the other, as restarts would: a real SQLite file in one
// DATA_DIR, or one Redis key prefix; the proxied requests go over sockets.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../../src/app.js'
import { cleanRedis, REDIS_URL, testConfig, uniquePrefix } from '../../support/app.js'
import { startBackend } from '../../support/backends.js'
import { tempDir, type Teardownable } from '../../support/basics.js'
import { http } from '../../support/http.js'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')

interface Line { level: number, msg: string, event?: string, variable?: string }

/** One start of the gateway on `env`: listening, with its log lines; `stop()` is the restart's first half. */
async function start (t: Teardownable, env: Record<string, string>) {
  const lines: Line[] = []
  const app = await buildApp(testConfig(t, env), {
    logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as Line) } } }
  })
  let closed = false
  const stop = async () => {
    if (!closed) await app.close()
    closed = true
  }
  t.teardown(stop)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const port = Number(new URL(url).port)
  /** Which backend answers the user service, by the tag it answers with. */
  const users = async () => (await http(port, '/api/users/1')).body
  return { app, lines, stop, users }
}

async function backend (t: Teardownable, tag: string) {
  const b = await startBackend((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }).end(tag) })
  t.teardown(() => b.close())
  return b
}

const patch = async (app: FastifyInstance, name: string, payload: object) =>
  await app.inject({ method: 'PATCH', url: `/admin/services/${name}`, headers: { authorization: AUTH }, payload })

const events = (lines: Line[], event: string) => lines.filter((l) => l.event === event)

function stores (t: Teardownable): Array<[string, () => Record<string, string>]> {
  return [
    ['the embedded store (one SQLite file)', () => ({ DATA_DIR: tempDir(t) })],
    ['Redis', () => ({ STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix() })]
  ]
}

for (const [where, storeEnv] of stores(t)) {
  t.test(`on ${where}: a restart with a changed USER_SERVICE_URL moves the seeded user-service`, async (t) => {
    const a = await backend(t, 'A')
    const b = await backend(t, 'B')
    const shared = storeEnv()
    if (shared.REDIS_KEY_PREFIX !== undefined) t.teardown(() => cleanRedis(shared.REDIS_KEY_PREFIX))

    const first = await start(t, { ...shared, USER_SERVICE_URL: a.url })
    t.equal(await first.users(), 'A')
    t.equal(events(first.lines, 'services_seeded').length, 1, 'the first start seeds the store')
    await first.stop()

    const second = await start(t, { ...shared, USER_SERVICE_URL: b.url })
    t.equal(await second.users(), 'B', 'the new USER_SERVICE_URL is used')
    const followed = events(second.lines, 'service_follows_environment')
    t.equal(followed.length, 1, 'one info line says so')
    t.equal(followed[0]?.level, 30)
    t.match(followed[0]?.msg, /user-service updated from USER_SERVICE_URL=/)
    t.equal((await second.app.inject({ url: '/admin/services/user-service', headers: { authorization: AUTH } })).json().data.backends[0].url, b.url)
    await second.stop()

    const third = await start(t, { ...shared, USER_SERVICE_URL: b.url })
    t.equal(await third.users(), 'B')
    t.same(events(third.lines, 'service_follows_environment'), [], 'nothing to do when nothing changed')
    await third.stop()

    const fourth = await start(t, { ...shared, USER_SERVICE_URL: a.url })
    t.equal(await fourth.users(), 'A', 'it keeps following the variable after an update from it')
  })

  t.test(`on ${where}: a user-service changed through the admin API is never overwritten; start-up warns`, async (t) => {
    const a = await backend(t, 'A')
    const b = await backend(t, 'B')
    const shared = storeEnv()
    if (shared.REDIS_KEY_PREFIX !== undefined) t.teardown(() => cleanRedis(shared.REDIS_KEY_PREFIX))

    const first = await start(t, { ...shared, USER_SERVICE_URL: a.url })
    t.equal((await patch(first.app, 'user-service', { timeoutMs: 5000 })).statusCode, 200)
    await first.stop()

    const second = await start(t, { ...shared, USER_SERVICE_URL: b.url })
    t.equal(await second.users(), 'A', 'the admin API\'s definition stays')
    t.same(events(second.lines, 'service_follows_environment'), [])
    const ignored = events(second.lines, 'service_variable_ignored')
    t.equal(ignored.length, 1, 'one warning')
    t.equal(ignored[0]?.level, 40)
    t.equal(ignored[0]?.variable, 'USER_SERVICE_URL')
    t.match(ignored[0]?.msg, /USER_SERVICE_URL=.* is ignored: user-service was changed through the admin API/)
    t.equal(second.app.services.get('user-service')?.definition.timeoutMs, 5000)
  })
}

t.test('a store seeded before seeded definitions were marked still follows the variable', async (t) => {
  const a = await backend(t, 'A')
  const b = await backend(t, 'B')
  const dataDir = tempDir(t)
  // The tables as an earlier version wrote them: no `seeded` column, the seed at version 1.
  mkdirSync(dataDir, { recursive: true })
  const db = new DatabaseSync(join(dataDir, 'gateway.db'))
  db.exec('CREATE TABLE services (name TEXT PRIMARY KEY, definition TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL) STRICT')
  db.exec('CREATE TABLE services_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT')
  const seeded = testConfig(t, { DATA_DIR: dataDir, USER_SERVICE_URL: a.url }).services
  const insert = db.prepare('INSERT INTO services (name, definition, version, updated_at) VALUES (?, ?, 1, ?)')
  for (const s of seeded) insert.run(s.name, JSON.stringify(s.definition), new Date().toISOString())
  db.exec('INSERT INTO services_version (id, version) VALUES (1, 1)')
  db.close()

  const gateway = await start(t, { DATA_DIR: dataDir, USER_SERVICE_URL: b.url })
  t.equal(await gateway.users(), 'B')
  t.equal(events(gateway.lines, 'service_follows_environment').length, 1)
})
