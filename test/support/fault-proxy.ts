// A TCP proxy between the gateway and Redis (or an upstream) that injects network faults on
// command, with no root needed (docs/reliability.md: FT-11, FT-12): added latency, a black hole
// (both directions silently dropped, connections kept open), dropped replies only (asymmetric
// partition: commands still reach the server) and RST of every connection.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Teardownable } from './basics.js'

export type FaultMode = 'pass' | 'blackhole' | 'drop-replies'

interface Pair { client: Socket, server: Socket }

export class FaultProxy {
  private srv: Server | null = null
  private pairs = new Set<Pair>()
  readonly targetPort: number
  readonly targetHost: string
  port = 0
  mode: FaultMode = 'pass'
  latencyMs = 0
  /** Bytes forwarded client→server and server→client, and dropped ones. */
  stats = { connections: 0, toServer: 0, toClient: 0, droppedToServer: 0, droppedToClient: 0 }

  constructor (targetPort: number, targetHost = '127.0.0.1') {
    this.targetPort = targetPort
    this.targetHost = targetHost
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async listen (t?: Teardownable): Promise<this> {
    this.srv = createServer((client) => this.accept(client))
    await new Promise<void>((resolve) => this.srv?.listen(0, '127.0.0.1', resolve))
    this.port = (this.srv.address() as AddressInfo).port
    t?.teardown(() => this.close())
    return this
  }

  private accept (client: Socket): void {
    this.stats.connections++
    client.setNoDelay(true)
    const server = connect({ port: this.targetPort, host: this.targetHost })
    server.setNoDelay(true)
    const pair = { client, server }
    this.pairs.add(pair)
    const drop = (): void => {
      this.pairs.delete(pair)
      client.destroy()
      server.destroy()
    }
    client.on('error', drop)
    server.on('error', drop)
    client.on('close', drop)
    server.on('close', drop)
    client.on('data', (d: Buffer) => {
      if (this.mode === 'blackhole') { this.stats.droppedToServer += d.length; return }
      this.forward(server, d, 'toServer')
    })
    server.on('data', (d: Buffer) => {
      if (this.mode !== 'pass') { this.stats.droppedToClient += d.length; return }
      this.forward(client, d, 'toClient')
    })
  }

  private forward (to: Socket, d: Buffer, dir: 'toServer' | 'toClient'): void {
    const send = (): void => {
      if (!to.destroyed) { to.write(d); this.stats[dir] += d.length }
    }
    // Same delay for every chunk keeps their order (timers of equal delay fire in order).
    if (this.latencyMs > 0) setTimeout(send, this.latencyMs)
    else send()
  }

  setLatency (ms: number): void { this.latencyMs = ms }
  blackhole (): void { this.mode = 'blackhole' }
  dropReplies (): void { this.mode = 'drop-replies' }
  heal (): void { this.mode = 'pass'; this.latencyMs = 0 }

  /** Sends an RST to both sides of every open connection. */
  resetAll (): void {
    for (const { client, server } of this.pairs) {
      client.resetAndDestroy()
      server.resetAndDestroy()
    }
    this.pairs.clear()
  }

  get openConnections (): number {
    return this.pairs.size
  }

  async close (): Promise<void> {
    for (const { client, server } of this.pairs) { client.destroy(); server.destroy() }
    this.pairs.clear()
    const srv = this.srv
    this.srv = null
    if (srv !== null) await new Promise<void>((resolve) => srv.close(() => resolve()))
  }
}

export async function startFaultProxy (t: Teardownable | undefined, targetPort: number): Promise<FaultProxy> {
  return await new FaultProxy(targetPort).listen(t)
}
