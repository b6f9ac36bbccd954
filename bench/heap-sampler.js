// Preloaded into a gateway by bench/alloc.js (`node --import ./bench/heap-sampler.js …`): the first
// SIGUSR2 starts V8's sampling heap profiler, counting objects that were already collected too
// (what a request allocates is mostly garbage by the time the profile is taken), the second stops
// it and writes the profile to HEAP_SAMPLE_OUT. Not for production use.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'

const out = process.env.HEAP_SAMPLE_OUT
const interval = Number(process.env.HEAP_SAMPLE_INTERVAL ?? 4096)
const session = new Session()
session.connect()
let sampling = false

const fail = (err) => { if (err) process.stderr.write(`heap-sampler: ${err.message}\n`) }
session.post('HeapProfiler.enable', fail)
process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true
    session.post('HeapProfiler.startSampling', {
      samplingInterval: interval,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true
    }, fail)
    return
  }
  sampling = false
  session.post('HeapProfiler.stopSampling', (err, result) => {
    if (err) return fail(err)
    writeFileSync(out, JSON.stringify(result.profile))
  })
})
