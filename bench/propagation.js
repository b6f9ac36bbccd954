// Propagation delay of service changes between two gateway processes on one Redis (the admin API's
// "every other instance within 1 s"). Starts a backend and two gateways (STORAGE=redis, a fresh
// REDIS_KEY_PREFIX, removed at the end), then makes CHANGES changes on gateway 1 through
// PUT /admin/services/bench-svc (alternating backends weights) and, for each, measures the time
// from gateway 1's response (applied there) to gateway 2's /health reporting the new table version,
// polled every POLL_MS. Prints the median and the worst.
//
//   npm run build && node bench/propagation.js        (REDIS_URL, default redis://127.0.0.1:6379)
//   CHANGES=30 POLL_MS=2
import { mkdtempSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { createProcesses, freePort, HarnessError } from './processes.js'
import { connectRedis, deleteKeys } from './redis-trips.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CHANGES = Number(process.env.CHANGES || 30)
const POLL_MS = Number(process.env.POLL_MS || 2)
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const PASSWORD = 'bench-propagation'
const AUTH = 'Basic ' + Buffer.from(`admin:${PASSWORD}`).toString('base64')

const tmp = mkdtempSync(join(tmpdir(), 'gw-propagation-'))
const prefix = `bench:${randomBytes(3).toString('hex')}:`
const procs = createProcesses({ dir: tmp, node: process.execPath, pin: false })

async function version (base) {
  const res = await fetch(`${base}/health`)
  return (await res.json()).services_version
}

try {
  const redis = await connectRedis(REDIS_URL)
  if (redis instanceof Error) throw new HarnessError(`Redis at ${REDIS_URL} is unreachable: ${redis.message}`)
  const backend = procs.start('backend', [join(ROOT, 'bench', 'backend.js'), '0'])
  const backendUrl = `http://127.0.0.1:${await procs.readPort(backend)}`
  const gateways = []
  for (const name of ['gateway-1', 'gateway-2']) {
    const port = await freePort()
    const env = {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      ADMIN_PASSWORD: PASSWORD,
      LOG_LEVEL: 'warn',
      STORAGE: 'redis',
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      HEALTH_CHECK_INTERVAL_SECONDS: '3600'
    }
    const proc = procs.start(name, [join(ROOT, 'dist', 'src', 'server.js')], { env, stdoutLog: name })
    const base = `http://127.0.0.1:${port}`
    await procs.waitHealthy(proc, base)
    gateways.push(base)
  }
  const [one, two] = gateways
  const delays = []
  for (let i = 0; i < CHANGES; i++) {
    const body = { prefix: '/bench', backends: [{ url: backendUrl, weight: 1 + (i % 7) }] }
    const res = await fetch(`${one}/admin/services/bench-svc`, {
      method: 'PUT', headers: { authorization: AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body)
    })
    const answered = performance.now()
    const change = await res.json()
    if (res.status >= 300) throw new HarnessError(`PUT answered ${res.status}: ${JSON.stringify(change)}`)
    const want = change.data.table_version
    while (await version(two) < want) {
      if (performance.now() - answered > 5000) throw new HarnessError(`gateway 2 did not reach version ${want} within 5 s`)
      await sleep(POLL_MS)
    }
    delays.push(performance.now() - answered)
    await sleep(50)
  }
  delays.sort((a, b) => a - b)
  const median = delays[Math.floor(delays.length / 2)]
  console.log(`propagation over ${CHANGES} changes (gateway 1 response -> gateway 2 /health version, polled every ${POLL_MS} ms):`)
  console.log(`  median ${median.toFixed(1)} ms, worst ${delays[delays.length - 1].toFixed(1)} ms, best ${delays[0].toFixed(1)} ms`)
  await deleteKeys(redis, prefix)
  redis.disconnect()
} catch (err) {
  console.error(err instanceof HarnessError ? err.message : err)
  process.exitCode = 1
} finally {
  await procs.stopAll()
  rmSync(tmp, { recursive: true, force: true })
}
