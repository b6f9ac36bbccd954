// Backend choice for one service (docs/proxying.md): round-robin, smooth weighted round-robin (nginx's
// algorithm: even spread, no bursts) or random; unhealthy backends are skipped while a healthy
// one exists, and when none is healthy one is still tried (a health check can be wrong).
import type { BackendConfig, BalanceStrategy } from './config.js'

export class Balancer {
  private readonly weights: number[]
  private readonly current: number[]
  private next = 0

  constructor (backends: readonly BackendConfig[], private readonly strategy: BalanceStrategy, private readonly random = Math.random) {
    this.weights = backends.map((b) => b.weight)
    this.current = backends.map(() => 0)
  }

  /**
   * Index of the backend to use. `usable(i)` says whether backend i is believed healthy; `avoid`
   * is the backend that just failed (a retry prefers another one). Preference: usable and not
   * avoided, then usable, then not avoided, then any.
   */
  pick (usable: (i: number) => boolean = () => true, avoid = -1): number {
    const n = this.weights.length
    if (n === 1) return 0
    const tiers: Array<(i: number) => boolean> = [
      (i) => i !== avoid && usable(i),
      usable,
      (i) => i !== avoid,
      () => true
    ]
    let allowed = tiers[3]
    for (const tier of tiers) {
      let found = false
      for (let i = 0; i < n; i++) if (tier(i)) { found = true; break }
      if (found) { allowed = tier; break }
    }
    switch (this.strategy) {
      case 'weighted': return this.pickWeighted(allowed)
      case 'random': return this.pickRandom(allowed)
      default: return this.pickRoundRobin(allowed)
    }
  }

  private pickRoundRobin (allowed: (i: number) => boolean): number {
    const n = this.weights.length
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n
      if (allowed(i)) { this.next = (i + 1) % n; return i }
    }
    return 0
  }

  private pickWeighted (allowed: (i: number) => boolean): number {
    let best = -1
    let total = 0
    for (let i = 0; i < this.weights.length; i++) {
      if (!allowed(i)) continue
      this.current[i] += this.weights[i]
      total += this.weights[i]
      if (best === -1 || this.current[i] > this.current[best]) best = i
    }
    if (best === -1) return 0
    this.current[best] -= total
    return best
  }

  private pickRandom (allowed: (i: number) => boolean): number {
    const options: number[] = []
    for (let i = 0; i < this.weights.length; i++) if (allowed(i)) options.push(i)
    if (options.length === 0) return 0
    return options[Math.floor(this.random() * options.length)]
  }
}
