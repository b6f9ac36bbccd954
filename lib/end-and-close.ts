// The last bytes a connection gets, and then its end: a whole close, never a half-close.
import type { Duplex } from 'node:stream'

/** How long a last answer may take to reach the kernel before its connection is cut anyway. */
export const ANSWER_FLUSH_MS = 1000

/**
 * Writes a connection's last bytes and closes it once they are flushed (Node's `destroySoon`), or
 * after ANSWER_FLUSH_MS when the peer does not read. `end()` alone only half-closes: a client that
 * keeps its side open would keep the socket, and whatever is tied to the socket's close (a request's
 * concurrency slots, breaker permit and upstream request) with it (docs/reliability.md, BI-27).
 */
export function endAndClose (socket: Duplex, data?: string): void {
  const timer = setTimeout(destroy, ANSWER_FLUSH_MS, socket)
  timer.unref()
  socket.end(data, () => {
    clearTimeout(timer)
    socket.destroy()
  })
}

function destroy (socket: Duplex): void { socket.destroy() }
