// Where the gateway's JSON log lines go: stdout, written asynchronously in batches of about 32 KiB
// (or every 250 ms, whichever comes first), flushed on exit by pino. A warning or an error is
// written at once, with whatever info lines wait before it: those are the lines an operator
// watches for.
//
// Measured at saturation with one access line per request: a write per line (sonic-boom's
// minLength 0) cost ~20 µs of CPU per request, in thread-pool hand-offs and context switches;
// batching brings logging down to ~10 µs. Each batch is still one write through the thread pool,
// which on a busy core cost as much as serializing the ~12 lines of a 4 KiB batch: batches of
// 32 KiB (~90 access lines, milliseconds of traffic at saturation) cut that cost to an eighth. A
// process killed with SIGKILL loses at most one batch. sonic-boom in its default string mode
// measures the byte length of the whole pending batch on every line, so it runs in buffer mode,
// where appending a line is O(1). One destination per process: stdout is one file.
import pino, { type DestinationStream } from 'pino'

/** sonic-boom writes once this much is waiting; its maxWrite must be larger. */
const BATCH_BYTES = 32 * 1024

let shared: DestinationStream | null = null

export function logDestination (): DestinationStream {
  if (shared === null) {
    // pino flushes an asynchronous destination on exit by itself.
    const boom = pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES, maxWrite: 2 * BATCH_BYTES, periodicFlush: 250, contentMode: 'buffer' })
    // The typings know only string mode; in buffer mode write() takes a Buffer.
    const write = boom.write.bind(boom) as unknown as (chunk: Buffer) => boolean
    shared = {
      write (line: string) {
        write(Buffer.from(line))
        // pino writes `{"level":NN` first: 40 and above are warn, error, fatal.
        if (line.charCodeAt(9) >= 0x34) boom.flush()
      }
    }
  }
  return shared
}
