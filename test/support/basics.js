// The small primitives every test, the test-support library and the benchmark share: free ports,
// temporary directories, waiting. Plain JavaScript (typed by basics.d.ts) because bench/ runs on
// bare Node without a TypeScript loader and imports it too.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as wait } from 'node:timers/promises'

/** A port nobody listens on right now: bind port 0, read it, close. */
export async function freePort (host = '127.0.0.1') {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** A fresh temporary directory; removed at `t`'s teardown when a test is given. */
export function tempDir (t, prefix = 'gw-') {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t?.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export async function sleep (ms) {
  await wait(ms)
}

/** Polls `fn` until it returns true or the timeout (default 10 s) passes; returns the last result. */
export async function until (fn, timeoutMs = 10_000, everyMs = 25) {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return true
    if (Date.now() > end) return false
    await sleep(everyMs)
  }
}
