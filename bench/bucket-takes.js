// Takes per second and Redis commands per take for RedisBuckets on one hot bucket (docs/performance.md: at
// most 0.5 commands per request at saturation with 50 connections on one key). Not part of
// `npm run bench`: it drives the store directly, with no HTTP in between, so it isolates what the
// bucket store sends. Run after `npm run build`:
//
//   node bench/bucket-takes.js
//
// Two arrival patterns, each run in turn:
//   lockstep  C loops that each take again as soon as their last take resolved: every loop is
//             woken by the same reply, so all of them take within one tick.
//   spread    the same loops, but each first yields to the event loop 0-3 times (setImmediate)
//             and burns ~20 µs of CPU, as a proxied request would between its arrival and its
//             take: takes arrive in different ticks, as requests on separate sockets do.
//
// Environment: REDIS_URL (redis://127.0.0.1:6379), BENCH_C (50), BENCH_SECONDS (5),
// BENCH_MODES (lockstep,spread). Writes only keys under a random `bench:<hex>:` prefix and deletes
// them at the end.
import { Redis } from 'ioredis'
import { randomBytes } from 'node:crypto'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setImmediate as yieldLoop } from 'node:timers/promises'
import { RedisBuckets } from '../dist/plugins/store/buckets-redis.js'
import { deleteKeys } from './redis-trips.js'

const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const C = Number(process.env.BENCH_C || 50)
const seconds = Number(process.env.BENCH_SECONDS || 5)
const modes = (process.env.BENCH_MODES || 'lockstep,spread').split(',')
const prefix = `bench:${randomBytes(6).toString('hex')}:`

function burn (us) {
  const until = performance.now() + us / 1000
  while (performance.now() < until);
}

async function run (mode) {
  const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false })
  await client.connect()
  const buckets = new RedisBuckets(client, { keyPrefix: prefix })
  await buckets.take('warm', 1, 1) // the script body goes once per connection: not counted

  let commands = 0
  const send = client.sendCommand.bind(client)
  client.sendCommand = (command, ...rest) => { commands++; return send(command, ...rest) }

  // Never limited (a bucket of 1e9 refilling 1e9 per minute), but every call takes a token.
  // A histogram in 10 µs steps up to 1 s: a list of every latency would cost GC pauses of its own.
  let takes = 0
  const histogram = new Uint32Array(100_001)
  // A stall of this process (GC, a busy machine) delays every take alike: shown apart.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 })
  loopDelay.enable()
  const until = performance.now() + seconds * 1000
  const start = performance.now()
  await Promise.all(Array.from({ length: C }, async (_, i) => {
    while (performance.now() < until) {
      if (mode === 'spread') {
        for (let n = (takes + i) % 4; n > 0; n--) await yieldLoop()
        burn(20)
      }
      const t0 = performance.now()
      await buckets.take(`hot-${mode}`, 1e9, 1e9)
      histogram[Math.min(100_000, Math.round((performance.now() - t0) * 100))]++
      takes++
    }
  }))
  const elapsed = (performance.now() - start) / 1000
  loopDelay.disable()
  client.sendCommand = send
  await client.quit()

  const pct = (p) => {
    let seen = 0
    for (let i = 0; i < histogram.length; i++) if ((seen += histogram[i]) > takes * p) return (i / 100).toFixed(2)
  }
  let max = histogram.length - 1
  while (max > 0 && histogram[max] === 0) max--
  let over100 = 0
  for (let i = 10_001; i < histogram.length; i++) over100 += histogram[i]
  console.log(`${mode.padEnd(8)} C=${C} ${seconds}s: ${Math.round(takes / elapsed).toLocaleString('en-US')} takes/s, ` +
    `${(commands / takes).toFixed(3)} commands/take (${commands} commands, ${takes} takes), ` +
    `take latency p50 ${pct(0.5)} p99 ${pct(0.99)} p99.9 ${pct(0.999)} max ${max >= 100_000 ? '≥1000' : (max / 100).toFixed(2)} ms, ${over100} over 100 ms; ` +
    `event-loop delay max ${(loopDelay.max / 1e6).toFixed(1)} ms`)
}

for (const mode of modes) await run(mode)
const admin = new Redis(url)
await deleteKeys(admin, prefix)
await admin.quit()
