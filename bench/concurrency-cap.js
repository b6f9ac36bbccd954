// The concurrency cap's own cost per proxied request (docs/configuration.md#load-shedding: under 2% of the full pipeline).
// Not part of `npm run bench`: it drives lib/concurrency.ts directly, the way the proxy's
// forward does with both caps set (acquireAll over a service and the global cap, one 'close'
// listener, the release when it fires), and subtracts the same loop without the limiter. With no
// cap configured the proxy skips all of this (one null check). Run after `npm run build`:
//
//   node bench/concurrency-cap.js
//
// Compare the result with the gateway's CPU time per proxied request: utime+stime of the gateway
// process over 40,000 requests came to 110-129 µs per request on the 2-core development machine
// (2026-12), so ~0.3 µs is about 0.3%.
import { EventEmitter } from 'node:events'
import { acquireAll, ConcurrencyLimit } from '../dist/lib/concurrency.js'

const N = 1_000_000
const RUNS = 5
const limits = [new ConcurrencyLimit(N), new ConcurrencyLimit(N)]
const noop = () => {}

function best (loop) {
  let min = Infinity
  for (let run = 0; run < RUNS; run++) {
    const t0 = process.hrtime.bigint()
    loop()
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / N)
  }
  return min
}

const withLimiter = best(() => {
  for (let i = 0; i < N; i++) {
    const res = new EventEmitter()
    let release = null
    res.once('close', () => { if (release !== null) return release(); withdraw() })
    const withdraw = acquireAll(limits, 0, (r) => { release = r }, noop)
    res.emit('close')
  }
})
const without = best(() => {
  for (let i = 0; i < N; i++) {
    const res = new EventEmitter()
    res.once('close', noop)
    res.emit('close')
  }
})
console.log(`with both caps: ${withLimiter.toFixed(0)} ns per request; the same loop without the limiter: ${without.toFixed(0)} ns; the limiter: ${(withLimiter - without).toFixed(0)} ns`)
