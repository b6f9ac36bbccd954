// The closed-loop load generator of bench/run.js and bench/ab.js: N keep-alive connections, each
// sending its next request as soon as the previous answer arrived, for a fixed time.
//
// Two generators give the same result shape:
//   - autocannon (npm, in this process): always available;
//   - wrk (C; Debian's `apt-get install wrk`), one thread, run as a child process (it inherits this
//     script's CPU pinning). It needs a little over half of autocannon's CPU per request (20
//     against 35 µs against bench/backend.js), so a case cheaper than the generator itself (a cache
//     hit) is measured by the gateway's speed more than by the generator's.
// BENCH_GENERATOR picks one: `wrk`, `autocannon`, or `auto` (the default: wrk when it is installed).
// A fixed request rate is always autocannon's (`overallRate`): wrk has none.
import autocannon from 'autocannon'
import { spawn, spawnSync } from 'node:child_process'
import { HarnessError } from './processes.js'

const choice = process.env.BENCH_GENERATOR ?? 'auto'
if (!['auto', 'wrk', 'autocannon'].includes(choice)) throw new HarnessError('BENCH_GENERATOR is auto, wrk or autocannon')
const hasWrk = spawnSync('wrk', ['--version']).error === undefined
if (choice === 'wrk' && !hasWrk) throw new HarnessError('BENCH_GENERATOR=wrk but wrk is not installed (apt-get install wrk)')

/** The generator in use: `wrk` or `autocannon`. */
export const generator = choice === 'autocannon' || !hasWrk ? 'autocannon' : 'wrk'

/**
 * Drives `url` with `connections` connections for `seconds` s (at `rate` requests a second when
 * given, else as fast as they answer). Returns 2xx, non-2xx and error
 * counts, the elapsed seconds, and latency mean/p50/p99 in ms (autocannon: 1 ms resolution; wrk:
 * 10 µs).
 */
export async function drive ({ url, headers = {}, connections, seconds, rate = 0 }) {
  if (generator === 'wrk' && rate === 0) return await wrk(url, headers, connections, seconds)
  const r = await autocannon({ url, headers, connections, duration: seconds, pipelining: 1, timeout: 10, ...(rate > 0 ? { overallRate: rate } : {}) })
  return {
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    secs: (r.finish - r.start) / 1000,
    mean: r.latency.mean,
    p50: r.latency.p50,
    p99: r.latency.p99,
    // Requests the proxy received: those still in flight when the run stopped count too.
    sent: Math.max(r.requests.sent ?? 0, r['2xx'] + r.non2xx)
  }
}

async function wrk (url, headers, connections, seconds) {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency']
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`)
  args.push(url)
  const out = await new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    child.stdout.on('data', (d) => { text += d })
    child.stderr.on('data', (d) => { text += d })
    child.on('error', reject)
    child.on('close', (code) => { code === 0 ? resolve(text) : reject(new HarnessError(`wrk exited ${code}: ${text}`)) })
  })
  return parseWrk(out)
}

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

/** `1.23ms` → 1.23 (ms). */
function ms (text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text)
  if (m === null) throw new HarnessError(`wrk: unreadable latency "${text}"`)
  return Number(m[1]) * UNIT_MS[m[2]]
}

/** Reads wrk's text summary (the format of wrk 4.x with --latency). */
export function parseWrk (text) {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(text)
  if (total === null) throw new HarnessError(`wrk: no summary in ${JSON.stringify(text.slice(0, 500))}`)
  const requests = Number(total[1])
  const secs = Number(total[2]) * UNIT_MS[total[3]] / 1000
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  const errors = sock === null ? 0 : sock.slice(1).reduce((a, n) => a + Number(n), 0)
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(text)
    return m === null ? NaN : ms(m[1])
  }
  const mean = /Latency\s+(\S+)/.exec(text)
  return {
    ok: requests - non2xx,
    non2xx,
    errors,
    secs,
    mean: mean === null ? NaN : ms(mean[1]),
    p50: pct(50),
    p99: pct(99),
    sent: requests
  }
}
