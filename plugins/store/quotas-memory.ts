// Quota counters in process memory (docs/policies.md#quotas): the quota hook's fallback while the
// shared store is unreachable and RATE_LIMIT_FAIL_MODE=open, so a quota still holds per instance.
// Bounded: at `maxEntries` the least recently used key's counter goes.
import { LruMap } from 'toad-cache'
import { periodAt } from '../../lib/quota-period.js'
import type { Quota, QuotaResult, QuotaStore } from './types.js'

export class MemoryQuotas implements QuotaStore {
  readonly #counts: LruMap<{ start: number, used: number }>
  readonly #now: () => number

  constructor (opts: { maxEntries?: number, now?: () => number } = {}) {
    this.#counts = new LruMap(opts.maxEntries ?? 10_000)
    this.#now = opts.now ?? Date.now
  }

  consumeSync (keyId: string, quota: Quota): QuotaResult {
    return this.#count(keyId, quota, true)
  }

  async consume (keyId: string, quota: Quota): Promise<QuotaResult> {
    return this.#count(keyId, quota, true)
  }

  async usage (keyId: string, quota: Quota): Promise<QuotaResult> {
    return this.#count(keyId, quota, false)
  }

  /** Raises the count of `keyId` in the period starting at `start` to at least `used`. */
  atLeast (keyId: string, start: number, used: number): void {
    const c = this.#counts.get(keyId)
    if (c === undefined || c.start !== start) this.#counts.set(keyId, { start, used })
    else if (c.used < used) c.used = used
  }

  async forget (keyId: string): Promise<void> {
    this.#counts.delete(keyId)
  }

  #count (keyId: string, quota: Quota, take: boolean): QuotaResult {
    const { start, end } = periodAt(this.#now(), quota.period, quota.timezone)
    let c = this.#counts.get(keyId)
    if (c === undefined || c.start !== start) {
      c = { start, used: 0 }
      if (take) this.#counts.set(keyId, c)
    }
    const allowed = c.used < quota.limit
    if (allowed && take) c.used++
    return { allowed, used: c.used, limit: quota.limit, start, end }
  }
}
