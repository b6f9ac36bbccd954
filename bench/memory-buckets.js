// Takes per second for the embedded store's in-memory buckets (plugins/store/buckets-memory.ts),
// which sit on the hot path of every rate-limited request in embedded mode and of the fallback
// while Redis is down. Not part of `npm run bench`: no HTTP, only the map. Run after
// `npm run build`:
//
//   node bench/memory-buckets.js
//
// Patterns: `hot` one id; `1k` 1,000 ids in turn; `flood` distinct ids past the cap (every take
// inserts and evicts). BENCH_TAKES (1,000,000 per pattern), BENCH_ROUNDS (5; the median is printed).
import { performance } from 'node:perf_hooks'
import { MemoryBuckets } from '../dist/plugins/store/buckets-memory.js'

const takes = Number(process.env.BENCH_TAKES || 1_000_000)
const rounds = Number(process.env.BENCH_ROUNDS || 5)
const ids = Array.from({ length: 2 * takes }, (_, i) => `ip:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:${i}`)

const patterns = {
  hot: (i) => ids[0],
  '1k': (i) => ids[i % 1000],
  flood: (i) => ids[i]
}

function once (pick) {
  const buckets = new MemoryBuckets({ maxBuckets: 100_000 })
  const start = performance.now()
  for (let i = 0; i < takes; i++) buckets.takeSync(pick(i), 10, 600)
  return takes / ((performance.now() - start) / 1000)
}

for (const [name, pick] of Object.entries(patterns)) {
  once(pick) // warm-up
  const runs = Array.from({ length: rounds }, () => once(pick)).sort((a, b) => a - b)
  console.log(`${name.padEnd(6)} ${Math.round(runs[Math.floor(rounds / 2)]).toLocaleString('en')} takes/s (median of ${rounds}; min ${Math.round(runs[0]).toLocaleString('en')}, max ${Math.round(runs[rounds - 1]).toLocaleString('en')})`)
}
