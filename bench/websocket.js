// WebSocket relay throughput (docs/proxying.md#websockets): MB/s of an echo through the gateway's tunnel against the
// same echo straight to the backend, measured in the same run, rounds interleaved. A ws client
// keeps WINDOW binary messages of SIZE bytes in flight and counts the bytes echoed back; each byte
// crosses the gateway twice (client → backend → client), the figure is bytes echoed per second.
// Usage: `npm run build && node bench/websocket.js` (env: ROUND_SECONDS per round, default 5; ROUNDS,
// default 2; SIZE, default 16384; WINDOW, default 64). Exit status 1 on a harness failure.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { createProcesses, freePort, HarnessError } from './processes.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const NODE = join(ROOT, 'node_modules/.bin/node')
const SECONDS = Number(process.env.ROUND_SECONDS ?? 5)
const ROUNDS = Number(process.env.ROUNDS ?? 2)
const SIZE = Number(process.env.SIZE ?? 16 * 1024)
const WINDOW = Number(process.env.WINDOW ?? 64)

/** Echo for `seconds` over one connection to `url`; resolves with MB/s (10^6 bytes) echoed back. */
async function echoRun (url, seconds) {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const payload = Buffer.alloc(SIZE, 7)
  let bytes = 0
  let sending = true
  let inFlight = 0
  return await new Promise((resolve, reject) => {
    const started = performance.now()
    ws.on('error', reject)
    ws.on('message', (data) => {
      bytes += data.length
      inFlight--
      if (sending) { ws.send(payload); inFlight++ } else if (inFlight === 0) finish()
    })
    for (let i = 0; i < WINDOW; i++) { ws.send(payload); inFlight++ }
    setTimeout(() => { sending = false }, seconds * 1000)
    function finish () {
      const elapsed = (performance.now() - started) / 1000
      ws.close()
      resolve(bytes / 1e6 / elapsed)
    }
  })
}

const dir = mkdtempSync(join(os.tmpdir(), 'gw-bench-ws-'))
const procs = createProcesses({ dir, node: NODE, pin: false })
let status = 0
try {
  const backend = procs.start('ws-backend', [join(ROOT, 'bench/ws-backend.js')])
  const backendPort = await procs.readPort(backend)
  const gatewayPort = await freePort()
  writeFileSync(join(dir, 'routes.json'), JSON.stringify({
    services: [{ name: 'echo', prefix: '/echo', backends: [{ url: `http://127.0.0.1:${backendPort}` }], websocket: true, wsMaxMessageBytes: 16 * 1024 * 1024, rateLimit: false }]
  }))
  const gateway = procs.start('gateway', ['--max-semi-space-size=16', join(ROOT, 'dist/src/server.js')], {
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(gatewayPort),
      ROUTES_FILE: join(dir, 'routes.json'),
      DATA_DIR: join(dir, 'data'),
      ADMIN_AUTH_ENABLED: 'false',
      LOG_LEVEL: 'warn',
      HEALTH_CHECK_INTERVAL_SECONDS: '3600'
    },
    stdoutLog: 'gateway.stdout'
  })
  await procs.waitHealthy(gateway, `http://127.0.0.1:${gatewayPort}`)

  const direct = []
  const viaGateway = []
  await echoRun(`ws://127.0.0.1:${gatewayPort}/echo`, 1) // warm-up: JIT and connection set-up
  for (let round = 0; round < ROUNDS; round++) {
    direct.push(await echoRun(`ws://127.0.0.1:${backendPort}/echo`, SECONDS))
    viaGateway.push(await echoRun(`ws://127.0.0.1:${gatewayPort}/echo`, SECONDS))
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(', ')
  console.log(`WebSocket echo, ${SIZE}-byte binary messages, ${WINDOW} in flight, ${SECONDS} s per round, ${ROUNDS} rounds (interleaved)`)
  console.log(`  direct to the backend: ${fmt(direct)} MB/s (median ${median(direct).toFixed(1)})`)
  console.log(`  through the gateway:   ${fmt(viaGateway)} MB/s (median ${median(viaGateway).toFixed(1)})`)
  console.log(`  gateway / direct:      ${(median(viaGateway) / median(direct)).toFixed(2)}`)
} catch (err) {
  console.error(err instanceof HarnessError ? err.message : err)
  status = 1
} finally {
  await procs.stopAll()
  rmSync(dir, { recursive: true, force: true })
}
process.exit(status)
