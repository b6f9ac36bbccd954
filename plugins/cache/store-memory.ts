// The embedded response cache store (docs/caching.md#stores): process memory, bounded in bytes,
// least recently used URL dropped first. A Map keeps insertion order, so a read moves its key to
// the end and eviction takes from the front.
import { allLive, purgeMatches, type CacheEntry, type CacheStore } from './types.js'

/** What one entry costs beyond its body: its fields, the policy state and the Map's own bookkeeping. */
function sizeOf (entry: CacheEntry): number {
  let n = entry.body.length + 256
  for (const name in entry.headers) n += name.length + String(entry.headers[name]).length + 4
  return n
}

interface Slot { entries: CacheEntry[], bytes: number }

export class MemoryCacheStore implements CacheStore {
  readonly kind = 'embedded'
  readonly #maxBytes: number
  readonly #slots = new Map<string, Slot>()
  #bytes = 0

  constructor (maxBytes: number) {
    this.#maxBytes = maxBytes
  }

  async get (key: string): Promise<CacheEntry[]> {
    return this.peek(key)
  }

  peek (key: string): CacheEntry[] {
    const slot = this.#slots.get(key)
    if (slot === undefined) return []
    const now = Date.now()
    let live = slot.entries
    // Checked first: a hit on live entries (the common case) allocates nothing.
    if (!allLive(live, now)) {
      live = live.filter((e) => e.expiresAt > now)
      if (live.length === 0) {
        this.#drop(key, slot)
        return []
      }
      this.#replace(key, slot, live)
    }
    // Most recently used goes last.
    this.#slots.delete(key)
    this.#slots.set(key, slot)
    return live
  }

  async put (key: string, entry: CacheEntry): Promise<void> {
    const size = sizeOf(entry)
    if (size > this.#maxBytes) return
    const slot = this.#slots.get(key)
    const now = Date.now()
    const kept = slot === undefined ? [] : slot.entries.filter((e) => e.variant !== entry.variant && e.expiresAt > now)
    kept.push(entry)
    if (slot === undefined) {
      const fresh = { entries: kept, bytes: size }
      this.#slots.set(key, fresh)
      this.#bytes += size
    } else {
      this.#replace(key, slot, kept)
      this.#slots.delete(key)
      this.#slots.set(key, slot)
    }
    this.#evict(key)
  }

  async delete (key: string): Promise<void> {
    const slot = this.#slots.get(key)
    if (slot !== undefined) this.#drop(key, slot)
  }

  async purge (service: string | null, prefix: string | null): Promise<number> {
    let n = 0
    for (const [key, slot] of this.#slots) {
      if (!purgeMatches(key, service, prefix)) continue
      this.#drop(key, slot)
      n++
    }
    return n
  }

  bytes (): number { return this.#bytes }

  async close (): Promise<void> {
    this.#slots.clear()
    this.#bytes = 0
  }

  /** Least recently used first, never the key just written. */
  #evict (keep: string): void {
    for (const [key, slot] of this.#slots) {
      if (this.#bytes <= this.#maxBytes) return
      if (key !== keep) this.#drop(key, slot)
    }
  }

  #replace (key: string, slot: Slot, entries: CacheEntry[]): void {
    let bytes = 0
    for (const e of entries) bytes += sizeOf(e)
    this.#bytes += bytes - slot.bytes
    slot.entries = entries
    slot.bytes = bytes
    if (entries.length === 0) this.#drop(key, slot)
  }

  #drop (key: string, slot: Slot): void {
    if (this.#slots.get(key) !== slot) return
    this.#slots.delete(key)
    this.#bytes -= slot.bytes
  }
}
