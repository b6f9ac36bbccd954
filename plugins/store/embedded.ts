// The embedded back end (docs/architecture.md#the-store): API keys in a SQLite file under DATA_DIR, failure counters in
// process memory. One process only, so invalidation is local.
import { openGatewayDb, gatewayDbFile } from './sqlite-file.js'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { LruMap } from 'toad-cache'
import type { ApiKeyRecord, FailureCounter, KeyStore, Reservation, StoredApiKey } from './types.js'

interface Row {
  id: string
  hash: string
  name: string
  rate_limit: number | null
  burst: number | null
  services: string | null
  active: number
  created_at: string
  expires_at: string | null
  last_used_at: string | null
  quota: string | null
}

const COLUMNS = 'id, name, rate_limit, burst, services, active, created_at, expires_at, last_used_at, quota'

export interface SqliteKeyStoreOptions {
  /** Directory holding `gateway.db`; created when missing. */
  dataDir: string
  /** How long a write waits for another process's lock before failing (ms). */
  busyTimeoutMs?: number
}

export class SqliteKeyStore implements KeyStore {
  readonly file: string
  readonly #db: DatabaseSync
  readonly #listeners: Array<(hash: string) => void> = []
  readonly #insert: StatementSync
  readonly #byHash: StatementSync
  readonly #byId: StatementSync
  readonly #all: StatementSync
  readonly #revoke: StatementSync
  readonly #delete: StatementSync
  readonly #touch: StatementSync

  constructor (opts: SqliteKeyStoreOptions) {
    this.file = gatewayDbFile(opts.dataDir)
    // WAL + synchronous=FULL: a create or revoke that returned has been fsynced, so it survives
    // kill -9 (and power loss), which docs/admin-api.md#api-keys and FT-15 (docs/reliability.md) require of an
    // acknowledged write.
    this.#db = openGatewayDb(opts.dataDir, 'FULL', opts.busyTimeoutMs)
    this.#db.exec(`CREATE TABLE IF NOT EXISTS api_keys (
      id TEXT PRIMARY KEY,
      hash TEXT NOT NULL UNIQUE,
      name TEXT NOT NULL,
      rate_limit INTEGER,
      burst INTEGER,
      services TEXT,
      active INTEGER NOT NULL DEFAULT 1,
      created_at TEXT NOT NULL,
      expires_at TEXT,
      last_used_at TEXT
    ) STRICT`)
    // Quotas (docs/policies.md#quotas) came later: a database made before them gains the column.
    const columns = this.#db.prepare('PRAGMA table_info(api_keys)').all() as Array<{ name: string }>
    if (!columns.some((c) => c.name === 'quota')) this.#db.exec('ALTER TABLE api_keys ADD COLUMN quota TEXT')
    this.#insert = this.#db.prepare(`INSERT INTO api_keys (${COLUMNS}, hash)
      VALUES (:id, :name, :rate_limit, :burst, :services, :active, :created_at, :expires_at, :last_used_at, :quota, :hash)`)
    this.#byHash = this.#db.prepare(`SELECT ${COLUMNS}, hash FROM api_keys WHERE hash = ?`)
    this.#byId = this.#db.prepare(`SELECT ${COLUMNS} FROM api_keys WHERE id = ?`)
    this.#all = this.#db.prepare(`SELECT ${COLUMNS} FROM api_keys ORDER BY created_at, id`)
    this.#revoke = this.#db.prepare('UPDATE api_keys SET active = 0 WHERE id = ? RETURNING hash')
    this.#delete = this.#db.prepare('DELETE FROM api_keys WHERE id = ? RETURNING hash')
    this.#touch = this.#db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?')
  }

  async create (key: StoredApiKey): Promise<void> {
    this.#insert.run({
      id: key.id,
      hash: key.hash,
      name: key.name,
      rate_limit: key.rate_limit,
      burst: key.burst,
      services: key.services === null ? null : JSON.stringify(key.services),
      active: key.active ? 1 : 0,
      created_at: key.created_at,
      expires_at: key.expires_at,
      last_used_at: key.last_used_at,
      quota: key.quota === null ? null : JSON.stringify(key.quota)
    })
  }

  async findByHash (hash: string): Promise<StoredApiKey | null> {
    const row = this.#byHash.get(hash) as Row | undefined
    return row === undefined ? null : { ...toRecord(row), hash: row.hash }
  }

  async get (id: string): Promise<ApiKeyRecord | null> {
    const row = this.#byId.get(id) as Row | undefined
    return row === undefined ? null : toRecord(row)
  }

  async list (): Promise<ApiKeyRecord[]> {
    return (this.#all.all() as unknown as Row[]).map(toRecord)
  }

  async revoke (id: string): Promise<boolean> {
    return this.#invalidating(this.#revoke.get(id) as { hash: string } | undefined)
  }

  async delete (id: string): Promise<boolean> {
    return this.#invalidating(this.#delete.get(id) as { hash: string } | undefined)
  }

  async touch (id: string, at: string): Promise<void> {
    this.#touch.run(at, id)
  }

  onInvalidate (listener: (hash: string) => void): void {
    this.#listeners.push(listener)
  }

  /** Answers a trivial query: false once closed or when the file is unusable. */
  ping (): boolean {
    try {
      this.#db.prepare('SELECT 1').get()
      return true
    } catch {
      return false
    }
  }

  close (): void {
    if (this.#db.isOpen) this.#db.close()
  }

  #invalidating (row: { hash: string } | undefined): boolean {
    if (row === undefined) return false
    // One process: nobody else caches our keys, so telling our own listeners is enough.
    for (const listener of this.#listeners) {
      try { listener(row.hash) } catch {}
    }
    return true
  }
}

function toRecord (row: Row): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    rate_limit: row.rate_limit,
    burst: row.burst,
    services: row.services === null ? null : JSON.parse(row.services),
    active: row.active === 1,
    created_at: row.created_at,
    expires_at: row.expires_at,
    last_used_at: row.last_used_at,
    quota: row.quota === null ? null : JSON.parse(row.quota)
  }
}

/** Fixed-window counters in a bounded LRU map: at `maxEntries` the least recently used id goes. */
export class MemoryFailureCounter implements FailureCounter {
  readonly #windows: LruMap<{ count: number, resetAt: number }>

  constructor (opts: { maxEntries?: number } = {}) {
    this.#windows = new LruMap(opts.maxEntries ?? 10_000)
  }

  async reserve (id: string, max: number, windowMs: number): Promise<Reservation> {
    const now = Date.now()
    let w = this.#windows.get(id)
    if (w === undefined || w.resetAt <= now) {
      w = { count: 0, resetAt: now + windowMs }
      this.#windows.set(id, w)
    }
    // Synchronous from the read to the write: nothing can interleave in one process.
    const allowed = w.count < max
    if (allowed) w.count++
    return { allowed, count: w.count, resetMs: w.resetAt - now }
  }

  async release (id: string): Promise<void> {
    const w = this.#windows.get(id)
    if (w !== undefined && w.resetAt > Date.now() && w.count > 0) w.count--
  }

  async peek (id: string): Promise<{ count: number, resetMs: number }> {
    const now = Date.now()
    const w = this.#windows.get(id)
    if (w === undefined || w.resetAt <= now) return { count: 0, resetMs: 0 }
    return { count: w.count, resetMs: w.resetAt - now }
  }
}
