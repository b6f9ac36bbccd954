// FT-15 (docs/reliability.md) for the SQLite key store: a child process creates keys and revokes
// some, acknowledging each write on stdout; it is SIGKILLed right after the last acknowledgement,
// and a new process (this one) must find every acknowledged write. This file is also the child
// (GW_DURABILITY_DIR).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { DatabaseSync } from 'node:sqlite'
import { SqliteKeyStore } from '../../../plugins/store/embedded.js'
import { makeKey } from './contract.js'

const CREATED = 300
const REVOKED = 100

if (process.env.GW_DURABILITY_DIR !== undefined) {
  // Child: acknowledge each write once create/revoke resolved, then wait to be killed.
  const keys = new SqliteKeyStore({ dataDir: process.env.GW_DURABILITY_DIR })
  for (let i = 0; i < CREATED; i++) {
    const key = makeKey({ name: `durable-${i}` })
    await keys.create(key)
    process.stdout.write(`created ${key.id} ${key.hash}\n`)
  }
  const ids = (await keys.list()).map((k) => k.id).slice(0, REVOKED)
  for (const id of ids) {
    await keys.revoke(id)
    process.stdout.write(`revoked ${id}\n`)
  }
  setInterval(() => {}, 60_000)
} else {
  const { default: t } = await import('tap')

  t.test('every acknowledged create and revoke survives a SIGKILL right after the last acknowledgement', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-durable-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    // The child needs the TypeScript loader tap gave us.
    const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'))
    const child = spawn(process.execPath, [...loader, fileURLToPath(import.meta.url)], {
      env: { ...process.env, GW_DURABILITY_DIR: dir },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    t.teardown(() => { child.kill('SIGKILL') })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))

    const created = new Map<string, string>()
    const revoked = new Set<string>()
    for await (const line of createInterface({ input: child.stdout })) {
      const [verb, id, hash] = line.split(' ')
      if (verb === 'created') created.set(id, hash)
      if (verb === 'revoked') revoked.add(id)
      if (revoked.size === REVOKED) {
        child.kill('SIGKILL') // no chance to close the database or flush anything
        break
      }
    }
    t.equal(await exited, 'SIGKILL', 'the child was killed, not closed')
    t.equal(created.size, CREATED, 'every create was acknowledged')
    t.equal(revoked.size, REVOKED, 'every revoke was acknowledged')

    const check = new DatabaseSync(join(dir, 'gateway.db'))
    t.same(check.prepare('PRAGMA integrity_check').get(), { integrity_check: 'ok' }, 'the file is intact')
    check.close()

    const keys = new SqliteKeyStore({ dataDir: dir })
    t.teardown(() => keys.close())
    const list = await keys.list()
    t.equal(list.length, CREATED, 'every created key is listed')
    t.equal(list.filter((k) => k.active).length, CREATED - REVOKED, 'the live ones are active')
    t.ok(list.filter((k) => !k.active).every((k) => revoked.has(k.id)), 'exactly the revoked ones are inactive')
    let found = 0
    for (const [id, hash] of created) if ((await keys.findByHash(hash))?.id === id) found++
    t.equal(found, CREATED, 'every key is found by its hash')
  })
}
