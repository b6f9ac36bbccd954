// Quota counters of the embedded store (docs/policies.md#quotas): one row per API key in the
// embedded store's gateway.db, so counts survive a restart. The database is written in one
// synchronous statement per request: nothing can interleave in one process, so the count is exact.
// This connection runs with synchronous=NORMAL (WAL): a count survives the process being killed,
// and costs no fsync per request; only a power loss may lose the last moments of counting.
import { openGatewayDb } from './sqlite-file.js'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { periodAt } from '../../lib/quota-period.js'
import type { Quota, QuotaResult, QuotaStore } from './types.js'

export interface SqliteQuotasOptions {
  dataDir: string
  busyTimeoutMs?: number
  /** The clock (tests pass a fake one). */
  now?: () => number
}

export class SqliteQuotas implements QuotaStore {
  readonly #db: DatabaseSync
  readonly #take: StatementSync
  readonly #read: StatementSync
  readonly #forget: StatementSync
  readonly #now: () => number

  constructor (opts: SqliteQuotasOptions) {
    this.#db = openGatewayDb(opts.dataDir, 'NORMAL', opts.busyTimeoutMs)
    this.#db.exec(`CREATE TABLE IF NOT EXISTS quota_usage (
      key_id TEXT PRIMARY KEY,
      period_start INTEGER NOT NULL,
      used INTEGER NOT NULL
    ) STRICT`)
    // A new period starts the count again at 1; within one, only a count under the limit grows.
    // No row returned: the limit is reached and nothing was written.
    this.#take = this.#db.prepare(`INSERT INTO quota_usage (key_id, period_start, used) VALUES (:id, :start, 1)
      ON CONFLICT (key_id) DO UPDATE SET
        used = CASE WHEN period_start = excluded.period_start THEN used + 1 ELSE 1 END,
        period_start = excluded.period_start
      WHERE period_start <> excluded.period_start OR used < :limit
      RETURNING used`)
    this.#read = this.#db.prepare('SELECT period_start, used FROM quota_usage WHERE key_id = ?')
    this.#forget = this.#db.prepare('DELETE FROM quota_usage WHERE key_id = ?')
    this.#now = opts.now ?? Date.now
  }

  async consume (keyId: string, quota: Quota): Promise<QuotaResult> {
    return this.consumeSync(keyId, quota)
  }

  consumeSync (keyId: string, quota: Quota): QuotaResult {
    const { start, end } = periodAt(this.#now(), quota.period, quota.timezone)
    const row = this.#take.get({ id: keyId, start, limit: quota.limit }) as { used: number } | undefined
    if (row !== undefined) return { allowed: true, used: row.used, limit: quota.limit, start, end }
    return { allowed: false, used: this.#used(keyId, start), limit: quota.limit, start, end }
  }

  async usage (keyId: string, quota: Quota): Promise<QuotaResult> {
    const { start, end } = periodAt(this.#now(), quota.period, quota.timezone)
    const used = this.#used(keyId, start)
    return { allowed: used < quota.limit, used, limit: quota.limit, start, end }
  }

  async forget (keyId: string): Promise<void> {
    this.#forget.run(keyId)
  }

  close (): void {
    if (this.#db.isOpen) this.#db.close()
  }

  #used (keyId: string, start: number): number {
    const row = this.#read.get(keyId) as { period_start: number, used: number } | undefined
    return row === undefined || row.period_start !== start ? 0 : row.used
  }
}
