// Service definitions in the embedded store (docs/admin-api.md#managing-services): a table in the same SQLite file as the API
// keys, plus a one-row table holding the table version. One process, so change listeners are local.
import { openGatewayDb } from './sqlite-file.js'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import type { ServiceSnapshot, ServiceStore, StoredService } from './types.js'

interface Row { name: string, definition: string, version: number, updated_at: string, seeded: number | null }

export class SqliteServiceStore implements ServiceStore {
  readonly #db: DatabaseSync
  readonly #listeners: Array<(version: number) => void> = []
  readonly #all: StatementSync
  readonly #version: StatementSync
  readonly #bump: StatementSync
  readonly #upsert: StatementSync
  readonly #delete: StatementSync

  constructor (opts: { dataDir: string, busyTimeoutMs?: number }) {
    // Its own connection to the key store's file (WAL lets both work side by side).
    this.#db = openGatewayDb(opts.dataDir, 'FULL', opts.busyTimeoutMs)
    this.#db.exec(`CREATE TABLE IF NOT EXISTS services (
      name TEXT PRIMARY KEY,
      definition TEXT NOT NULL,
      version INTEGER NOT NULL,
      updated_at TEXT NOT NULL
    ) STRICT`)
    // `seeded` (1: written from the configuration, 0: by the admin API, NULL: written before the
    // column existed) is added to a table an earlier version created.
    const columns = this.#db.prepare('SELECT name FROM pragma_table_info(\'services\')').all() as Array<{ name: string }>
    if (!columns.some((c) => c.name === 'seeded')) this.#db.exec('ALTER TABLE services ADD COLUMN seeded INTEGER')
    this.#db.exec('CREATE TABLE IF NOT EXISTS services_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT')
    this.#all = this.#db.prepare('SELECT name, definition, version, updated_at, seeded FROM services ORDER BY version, name')
    this.#version = this.#db.prepare('SELECT version FROM services_version WHERE id = 1')
    this.#bump = this.#db.prepare(`INSERT INTO services_version (id, version) VALUES (1, 1)
      ON CONFLICT (id) DO UPDATE SET version = version + 1 RETURNING version`)
    this.#upsert = this.#db.prepare(`INSERT INTO services (name, definition, version, updated_at, seeded) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, version = excluded.version, updated_at = excluded.updated_at,
        seeded = excluded.seeded`)
    this.#delete = this.#db.prepare('DELETE FROM services WHERE name = ?')
  }

  async snapshot (): Promise<ServiceSnapshot> {
    return this.#transaction('BEGIN', () => ({ version: this.#current(), services: (this.#all.all() as unknown as Row[]).map(toStored) }))
  }

  async version (): Promise<number> {
    return this.#current()
  }

  async put (name: string, definition: Record<string, unknown>, at: string, expected: number, seeded = false): Promise<number | null> {
    const version = this.#transaction('BEGIN IMMEDIATE', () => {
      if (this.#current() !== expected) return null
      const v = (this.#bump.get() as { version: number }).version
      this.#upsert.run(name, JSON.stringify(definition), v, at, seeded ? 1 : 0)
      return v
    })
    if (version !== null) this.#notify(version)
    return version
  }

  async delete (name: string, expected: number): Promise<number | null> {
    const version = this.#transaction('BEGIN IMMEDIATE', () => {
      if (this.#current() !== expected) return null
      if (Number(this.#delete.run(name).changes) === 0) return 0
      return (this.#bump.get() as { version: number }).version
    })
    if (version !== null && version > 0) this.#notify(version)
    return version
  }

  async seed (services: Array<{ name: string, definition: Record<string, unknown> }>, at: string): Promise<boolean> {
    const seeded = this.#transaction('BEGIN IMMEDIATE', () => {
      if (this.#current() !== 0) return false
      const v = (this.#bump.get() as { version: number }).version
      for (const s of services) this.#upsert.run(s.name, JSON.stringify(s.definition), v, at, 1)
      return true
    })
    if (seeded) this.#notify(1)
    return seeded
  }

  onChange (listener: (version: number) => void): void {
    this.#listeners.push(listener)
  }

  close (): void {
    if (this.#db.isOpen) this.#db.close()
  }

  #current (): number {
    return (this.#version.get() as { version: number } | undefined)?.version ?? 0
  }

  #transaction<T> (begin: string, fn: () => T): T {
    this.#db.exec(begin)
    try {
      const result = fn()
      this.#db.exec('COMMIT')
      return result
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK')
      throw err
    }
  }

  #notify (version: number): void {
    for (const listener of this.#listeners) {
      try { listener(version) } catch {}
    }
  }
}

function toStored (row: Row): StoredService {
  const stored: StoredService = { name: row.name, definition: JSON.parse(row.definition), version: row.version, updated_at: row.updated_at }
  if (row.seeded !== null) stored.seeded = row.seeded === 1
  return stored
}
