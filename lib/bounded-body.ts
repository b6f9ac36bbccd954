// A request body of unknown length (chunked) on its way to a backend: counted against the body
// limit (docs/reliability.md, BI-08) and coalesced, so a client sending 1-byte chunks does not make
// the gateway forward one tiny write per chunk (BI-09).
import { Transform, type TransformCallback } from 'node:stream'
import { PayloadTooLarge } from './errors.js'

/** Chunks are held until this many bytes or the end of the current I/O turn, whichever is first. */
const COALESCE_BYTES = 16 * 1024

export class BoundedBody extends Transform {
  private seen = 0
  private held: Buffer[] = []
  private heldBytes = 0
  private flushScheduled = false

  constructor (private readonly limit: number) {
    super()
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      callback(new PayloadTooLarge(String(this.limit)))
      return
    }
    this.held.push(chunk)
    this.heldBytes += chunk.length
    if (this.heldBytes >= COALESCE_BYTES) this.release()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => { this.flushScheduled = false; this.release() })
    }
    callback()
  }

  override _flush (callback: TransformCallback): void {
    this.release()
    callback()
  }

  private release (): void {
    if (this.heldBytes === 0 || this.destroyed) return
    const out = this.held.length === 1 ? this.held[0] : Buffer.concat(this.held, this.heldBytes)
    this.held = []
    this.heldBytes = 0
    this.push(out)
  }
}
