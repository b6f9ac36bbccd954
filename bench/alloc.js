// Bytes allocated per proxied request, and where, from V8's sampling heap profiler.
//
//   npm run build && node bench/alloc.js
//
// For each case (ALLOC_CASES, default `plain,full`; ALLOC_STORE `embedded` (default) or `redis`)
// it starts bench/backend.js and a gateway preloaded with bench/heap-sampler.js, warms it up, then
// samples the allocations of ALLOC_REQUESTS (50,000) requests from autocannon (50 connections) and
// prints the bytes per request and the allocation sites that cost the most per request. Unlike
// req/s or CPU time, the figures barely move when other jobs load the machine, so before/after
// claims about allocations can be made on a busy box. The sampling is statistical (one sample per
// ALLOC_INTERVAL bytes, default 4096): differences under ~5% are noise.
import autocannon from 'autocannon'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchHeaders, gatewayEnv, writeRoutes } from './gateway-setup.js'
import { createProcesses, freePort, HarnessError } from './processes.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '..')
const cases = (process.env.ALLOC_CASES ?? 'plain,full').split(',')
const store = process.env.ALLOC_STORE ?? 'embedded'
const requests = Number(process.env.ALLOC_REQUESTS ?? 50_000)
const interval = Number(process.env.ALLOC_INTERVAL ?? 4096)
const top = Number(process.env.ALLOC_TOP ?? 25)
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const tmp = mkdtempSync(join(os.tmpdir(), 'gw-alloc-'))
const procs = createProcesses({ dir: tmp, node: process.execPath, pin: false })

async function startGateway (kind, backend) {
  const port = await freePort()
  const password = 'alloc-' + Math.random().toString(36).slice(2)
  const out = join(tmp, `${kind}.heapprofile`)
  const env = gatewayEnv({
    kind,
    store,
    port,
    password,
    routes: writeRoutes(tmp, kind, kind, backend),
    dataDir: join(tmp, `data-${kind}`),
    redisUrl,
    redisPrefix: `gwalloc${kind}${process.pid}:`,
    extra: { HEAP_SAMPLE_OUT: out, HEAP_SAMPLE_INTERVAL: String(interval) }
  })
  const proc = procs.start(`gateway-${kind}`, ['--import', join(HERE, 'heap-sampler.js'), join(ROOT, 'dist', 'src', 'server.js')], { env, stdoutLog: `gateway-${kind}` })
  const base = `http://127.0.0.1:${port}`
  await procs.waitHealthy(proc, base)
  const headers = await benchHeaders(kind, base, password, 'alloc')
  return { kind, proc, out, url: `${base}/bench/items`, headers }
}

async function drive (g, amount) {
  const r = await autocannon({ url: g.url, headers: g.headers, connections: 50, amount, pipelining: 1, timeout: 10 })
  if (r.non2xx > 0 || r.errors > 0) throw new HarnessError(`${g.kind}: ${r.non2xx} non-2xx and ${r.errors} errors`)
  return r['2xx']
}

/** Self bytes per allocation site (function, file:line), summed over the profile's tree. */
function sites (profile) {
  const bytes = new Map()
  let total = 0
  const walk = (node) => {
    const self = node.selfSize
    if (self > 0) {
      const f = node.callFrame
      const file = f.url.replace(/^file:\/\//, '').replace(ROOT + '/', '')
      const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`
      bytes.set(key, (bytes.get(key) ?? 0) + self)
      total += self
    }
    for (const child of node.children) walk(child)
  }
  walk(profile.head)
  return { total, bytes }
}

const fmt = (n, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })

try {
  const backendProc = procs.start('backend', [join(HERE, 'backend.js')])
  const backend = `http://127.0.0.1:${await procs.readPort(backendProc)}`
  const results = []
  for (const kind of cases) {
    const g = await startGateway(kind, backend)
    await drive(g, Math.min(20_000, requests)) // warm-up: optimised code, filled caches
    process.kill(g.proc.pid, 'SIGUSR2')
    await new Promise((resolve) => setTimeout(resolve, 200))
    const served = await drive(g, requests)
    process.kill(g.proc.pid, 'SIGUSR2')
    for (let i = 0; i < 100 && !existsSync(g.out); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    await new Promise((resolve) => setTimeout(resolve, 300))
    const { total, bytes } = sites(JSON.parse(readFileSync(g.out, 'utf8')))
    results.push({ kind, perRequest: total / served, bytes, served })
    console.log(`\n## ${kind} (${store}): ${fmt(total / served)} bytes allocated per request (${fmt(served)} requests, one sample per ${interval} bytes)\n`)
    console.log('| bytes/request | allocation site |\n|---:|---|')
    for (const [site, b] of [...bytes].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`| ${fmt(b / served)} | ${site} |`)
    await procs.stop([g.proc])
  }
  console.log('\n' + results.map((r) => `${r.kind}: ${fmt(r.perRequest)} B/request`).join(', '))
  const [base, other] = [results.find((r) => r.kind === 'plain'), results.find((r) => r.kind === 'full')]
  if (base !== undefined && other !== undefined) {
    // Where the full pipeline allocates more than the plain proxy, site by site.
    const diff = new Map()
    for (const [site, b] of other.bytes) diff.set(site, b / other.served)
    for (const [site, b] of base.bytes) diff.set(site, (diff.get(site) ?? 0) - b / base.served)
    console.log(`\n## full − plain: ${fmt(other.perRequest - base.perRequest)} bytes per request\n`)
    console.log('| bytes/request | allocation site |\n|---:|---|')
    for (const [site, b] of [...diff].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`| ${fmt(b)} | ${site} |`)
  }
} finally {
  await procs.stopAll()
  rmSync(tmp, { recursive: true, force: true })
}
