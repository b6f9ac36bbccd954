// Where the gateway's JSON log lines go: stdout, written asynchronously so lines of one tick
// share a write.
//
// pino's destination (sonic-boom) in its default string mode measures the byte length of the
// whole pending batch on every line, which cost ~4 µs per line at gateway rates; in buffer mode
// appending a line is O(1). One destination per process: stdout is one file.
import pino, { type DestinationStream } from 'pino'

let shared: DestinationStream | null = null

export function logDestination (): DestinationStream {
  if (shared === null) {
    // pino flushes an asynchronous destination on exit by itself.
    const boom = pino.destination({ dest: 1, sync: false, minLength: 0, contentMode: 'buffer' })
    // The typings know only string mode; in buffer mode write() takes a Buffer.
    const write = boom.write.bind(boom) as unknown as (chunk: Buffer) => boolean
    shared = { write: (line: string) => { write(Buffer.from(line)) } }
  }
  return shared
}
