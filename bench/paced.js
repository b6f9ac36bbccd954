// Open-loop, fixed-rate load for the latency run. autocannon's `overallRate` is not used here on
// purpose: it gives every connection a per-second quota that it fires back-to-back at the start of
// each second (so "half of saturation" is really saturation for half a second), its latency
// histogram has 1 ms resolution, and its coordinated-omission correction with a 1 ms expected
// interval adds synthetic samples to every response slower than 1 ms. Here requests are started on
// a schedule spread evenly over time (catching up after a late timer), whether or not earlier ones
// have answered, and each latency is measured with performance.now() from the moment the request
// is handed to the connection pool until its body has been read (so time queued for a free
// connection counts), in microseconds.
import { performance } from 'node:perf_hooks'
import { Pool } from 'undici'

/**
 * @param {{ url: string, headers?: Record<string, string>, rate: number, durationMs: number,
 *           connections?: number }} opts
 * @returns {Promise<{ sent: number, ok: number, non2xx: number, errors: number,
 *           p50: number, p90: number, p99: number, p999: number, max: number, mean: number,
 *           maxLagMs: number, achievedRate: number }>} latencies in ms (fractional)
 */
export async function pacedRun ({ url, headers = {}, rate, durationMs, connections = 50 }) {
  const target = new URL(url)
  const pool = new Pool(target.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 })
  const path = target.pathname + target.search
  const total = Math.max(1, Math.floor(rate * durationMs / 1000))
  const latencies = new Float64Array(total)
  let sent = 0
  let done = 0
  let ok = 0
  let non2xx = 0
  let errors = 0
  let maxLagMs = 0
  let lastSend = 0
  const start = performance.now()

  await new Promise((resolve) => {
    const finishOne = () => { if (++done === total) resolve() }
    const fire = () => {
      const t0 = performance.now()
      pool.request({ method: 'GET', path, headers }).then(async (res) => {
        await res.body.dump()
        if (res.statusCode >= 200 && res.statusCode < 300) {
          latencies[ok++] = performance.now() - t0
        } else {
          non2xx++
        }
        finishOne()
      }, () => { errors++; finishOne() })
    }
    const tick = () => {
      const now = performance.now()
      const due = Math.min(total, Math.floor((now - start) * rate / 1000) + 1)
      if (due > sent + 1) maxLagMs = Math.max(maxLagMs, (due - sent - 1) * 1000 / rate)
      while (sent < due) { sent++; fire() }
      lastSend = now
      if (sent < total) setTimeout(tick, Math.max(0, (sent * 1000 / rate) - (performance.now() - start)))
    }
    tick()
  })
  await pool.close()

  const sorted = latencies.subarray(0, ok).sort()
  const at = (q) => (ok === 0 ? NaN : sorted[Math.min(ok - 1, Math.ceil(q * ok) - 1)])
  let sum = 0
  for (let i = 0; i < ok; i++) sum += sorted[i]
  return {
    sent,
    ok,
    non2xx,
    errors,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: ok === 0 ? NaN : sorted[ok - 1],
    mean: ok === 0 ? NaN : sum / ok,
    maxLagMs,
    // Requests started per second over the sending window (the first one goes at t = 0).
    achievedRate: sent > 1 && lastSend > start ? (sent - 1) * 1000 / (lastSend - start) : rate
  }
}
