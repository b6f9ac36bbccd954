// The bounds on WebSocket tunnels (docs/architecture.md#websocket-upgrades): a service's
// `maxTunnels` and MAX_WEBSOCKET_TUNNELS for the whole gateway. A tunnel lives for hours, so it
// takes no HTTP concurrency slot beyond its handshake; these places are its own. A place is taken
// before the backend is dialled and held until the upgrade fails or the tunnel closes.
//
// Counted by service name, not on the route: a service's route is rebuilt when an admin update
// changes it, and the tunnels opened on the old route still count against the new one.

export class TunnelLimits {
  /** MAX_WEBSOCKET_TUNNELS, or null for no global bound. */
  readonly max: number | null
  #total = 0
  readonly #perService = new Map<string, number>()

  constructor (max: number | null) {
    this.max = max
  }

  /** Places taken now (opening or open), for the whole gateway or for one service. */
  get total (): number { return this.#total }
  held (service: string): number { return this.#perService.get(service) ?? 0 }

  /**
   * Takes a place for a tunnel of `service`, whose own bound is `serviceMax` (null: none). Returns a
   * function that gives it back (only its first call counts), or null when a bound is reached.
   */
  take (service: string, serviceMax: number | null): (() => void) | null {
    const held = this.held(service)
    if ((this.max !== null && this.#total >= this.max) || (serviceMax !== null && held >= serviceMax)) return null
    this.#total++
    this.#perService.set(service, held + 1)
    let given = false
    return () => {
      if (given) return
      given = true
      this.#total--
      const left = this.held(service) - 1
      if (left === 0) this.#perService.delete(service)
      else this.#perService.set(service, left)
    }
  }
}
