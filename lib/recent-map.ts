// A map for answers that are only worth keeping briefly (an API key the store does not know): each
// entry lives at least `ttlMs`, and while the map is in use about twice that at most. Entries go in
// a current generation; at the first access `ttlMs` or more after the last rotation, the older
// generation is dropped whole and the current one becomes the older. So memory
// follows the recent write rate: a flood of random keys costs what ~2 × ttlMs of it holds, not a
// bound reached once and kept for good (an LRU by count keeps every entry until evicted).
// Rotation happens on access, so an idle map needs no timer.

export class RecentMap<V> {
  #current = new Map<string, V>()
  #previous = new Map<string, V>()
  #rotatedAt: number

  /** `maxEntries` bounds each generation; past it, writes are dropped until the next rotation. */
  constructor (readonly ttlMs: number, readonly maxEntries: number, now: number = Date.now()) {
    this.#rotatedAt = now
  }

  #rotate (now: number): void {
    const age = now - this.#rotatedAt
    if (age < this.ttlMs) return
    // Two periods or more without an access: the current generation is old too.
    this.#previous = age >= 2 * this.ttlMs ? new Map() : this.#current
    this.#current = new Map()
    this.#rotatedAt = now
  }

  get (key: string, now: number = Date.now()): V | undefined {
    this.#rotate(now)
    return this.#current.get(key) ?? this.#previous.get(key)
  }

  set (key: string, value: V, now: number = Date.now()): void {
    this.#rotate(now)
    if (this.#current.size < this.maxEntries) this.#current.set(key, value)
  }

  delete (key: string): void {
    this.#current.delete(key)
    this.#previous.delete(key)
  }

  clear (): void {
    this.#current.clear()
    this.#previous.clear()
  }

  /** Entries held now, both generations. */
  get size (): number {
    return this.#current.size + this.#previous.size
  }
}
