// Paired A/B of two builds of the gateway, for before/after claims on a noisy machine.
//
//   node bench/ab.js <checkout A> <checkout B>
//
// Each checkout must hold a compiled gateway (`npm run build` there: dist/src/server.js). A typical
// "before" is a worktree of the earlier commit: `git worktree add /tmp/before <commit> && cd
// /tmp/before && npm ci` (or link node_modules). Both gateways run the same configuration in front of
// one bench/backend.js, pinned to the same CPU (the backend and the load generator to the other), and are
// driven in interleaved rounds (A B B A A B …) so that a slow patch of the machine hits both. Per
// round it reads req/s and the gateway's CPU time per request from /proc/<pid>/stat, which is far
// steadier than req/s here; it prints every round, the medians and B's ratio to A with its spread.
//
// Settings (environment): AB_CASE `full` (key auth, per-key bucket, retries, info logging; the
// default), `plain` (auth none, no rate limit, warn logging), `cachehit` (plain with the response
// cache on, every measured request a hit) or `cachemiss` (plain with the cache on and nothing
// storable); AB_STORE `embedded` (default) or `redis` (REDIS_URL, default redis://127.0.0.1:6379);
// AB_STORE_A / AB_STORE_B: a store for one side only; AB_ROUNDS (6), AB_SECONDS (5),
// AB_CONNECTIONS (50), AB_WARMUP seconds (5: the first seconds of a fresh process run unoptimised
// code); AB_KEEP_TMP=1 keeps the temporary directory (each side's stdout and stderr logs); AB_RATE: a fixed request rate (autocannon's overallRate)
// instead of saturation, where CPU per request is steadier still; AB_ENV_A / AB_ENV_B: extra
// `NAME=value` settings (space-separated) for one side only; AB_CASE_A / AB_CASE_B: a case for one
// side only (e.g. plain against cachehit: a hit against the same request proxied); AB_NODE_FLAGS_A /
// AB_NODE_FLAGS_B: the Node flags of one side's gateway (default `--max-semi-space-size=16`, as
// `npm start` runs it; e.g. `--max-semi-space-size=64` to try a larger young generation, or
// `--cpu-prof --cpu-prof-dir=DIR` for a profile; a baseline side has none by default). The two
// checkouts may be the same one, to compare settings or cases: e.g. span export against none,
//
//   AB_ENV_B='OTEL_TRACES_EXPORTER=otlp OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1' node bench/ab.js . .
//
// (a side that exports gets a local OTLP sink answering 200 unless it names its own endpoint).
// A side's case may also be `baseline`: the bench's bare Fastify + @fastify/http-proxy
// (bench/baseline.js, its checkout ignored), so a target such as "the full pipeline ≥ 1.1× the
// baseline" is measured in paired rounds too: `AB_CASE_A=baseline node bench/ab.js . .`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import { benchHeaders, gatewayEnv, writeRoutes } from './gateway-setup.js'
import { drive, generator } from './load.js'
import { createProcesses, freePort, HarnessError } from './processes.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const [dirA, dirB] = process.argv.slice(2).map((d) => resolve(d))
if (dirA === undefined || dirB === undefined) {
  console.error('usage: node bench/ab.js <checkout A> <checkout B>')
  process.exit(2)
}
const kind = process.env.AB_CASE ?? 'full'
// One case per side: AB_CASE_A / AB_CASE_B (default AB_CASE), e.g. plain against cachehit.
const kinds = { A: process.env.AB_CASE_A ?? kind, B: process.env.AB_CASE_B ?? kind }
const store = process.env.AB_STORE ?? 'embedded'
// One store per side: AB_STORE_A / AB_STORE_B (default AB_STORE), e.g. the same pipeline embedded against on Redis.
const stores = { A: process.env.AB_STORE_A ?? store, B: process.env.AB_STORE_B ?? store }
const rounds = Number(process.env.AB_ROUNDS ?? 6)
const seconds = Number(process.env.AB_SECONDS ?? 5)
const connections = Number(process.env.AB_CONNECTIONS ?? 50)
const warmup = Number(process.env.AB_WARMUP ?? 5)
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const rate = process.env.AB_RATE === undefined ? 0 : Number(process.env.AB_RATE)
const extraEnv = { A: settings(process.env.AB_ENV_A), B: settings(process.env.AB_ENV_B) }
if (![kinds.A, kinds.B].every((k) => ['full', 'plain', 'cachehit', 'cachemiss', 'baseline'].includes(k)) || ![stores.A, stores.B].every((s) => ['embedded', 'redis'].includes(s))) {
  throw new HarnessError('AB_CASE (AB_CASE_A, AB_CASE_B) is full, plain, cachehit, cachemiss or baseline; AB_STORE (AB_STORE_A, AB_STORE_B) embedded or redis')
}

/** `A=1 B=two` → { A: '1', B: 'two' }. */
function settings (text) {
  const out = {}
  for (const pair of (text ?? '').split(/\s+/).filter(Boolean)) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new HarnessError(`AB_ENV_*: "${pair}" is not NAME=value`)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

/** A local OTLP endpoint that reads each export and answers 200 (for a side that exports spans). */
async function startOtlpSink () {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end())
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() }
}
let otlpSink = null

const tmp = mkdtempSync(join(os.tmpdir(), 'gw-ab-'))
const pin = os.availableParallelism() >= 2 && spawnSync('taskset', ['-V']).status === 0
const procs = createProcesses({ dir: tmp, node: process.execPath, pin })
if (pin) spawnSync('taskset', ['-pc', '0', String(process.pid)])

/** CPU ticks (user + system; 100 a second) the process has used so far. */
function cpuTicks (pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

/**
 * The bench's baseline (bare Fastify + @fastify/http-proxy, bench/baseline.js) as one side, run as
 * `npm run bench` runs it: with no Node flags unless AB_NODE_FLAGS_<side> names some (a CPU profile).
 */
async function startBaseline (label, backend) {
  const flags = (process.env[`AB_NODE_FLAGS_${label}`] ?? '').split(/\s+/).filter(Boolean)
  const proc = procs.start(`baseline-${label}`, [...flags, join(HERE, 'baseline.js'), backend, '0'], { cpu: pin ? '1' : null })
  const url = `http://127.0.0.1:${await procs.readPort(proc)}/bench/items`
  const probe = await fetch(url)
  await probe.arrayBuffer()
  if (probe.status !== 200) throw new HarnessError(`${label}: the baseline answered ${probe.status}`)
  return { label, proc, url, headers: {}, rounds: [] }
}

async function startGateway (label, dir, backend) {
  if (kinds[label] === 'baseline') return startBaseline(label, backend)
  const server = join(dir, 'dist', 'src', 'server.js')
  const port = await freePort()
  const password = 'ab-' + Math.random().toString(36).slice(2)
  const extra = extraEnv[label]
  if (extra.OTEL_TRACES_EXPORTER === 'otlp' && extra.OTEL_EXPORTER_OTLP_ENDPOINT === undefined) {
    otlpSink ??= await startOtlpSink()
    extra.OTEL_EXPORTER_OTLP_ENDPOINT = otlpSink.url
  }
  const env = gatewayEnv({
    kind: kinds[label],
    store: stores[label],
    port,
    password,
    routes: writeRoutes(tmp, label, kinds[label], backend),
    dataDir: join(tmp, `data-${label}`),
    redisUrl,
    redisPrefix: `gwab${label}${process.pid}:`,
    extra
  })
  const proc = procs.start(`gateway-${label}`, [...(process.env[`AB_NODE_FLAGS_${label}`] ?? '--max-semi-space-size=16').split(/\s+/).filter(Boolean), server], { env, cpu: pin ? '1' : null, stdoutLog: `gateway-${label}` })
  const base = `http://127.0.0.1:${port}`
  await procs.waitHealthy(proc, base)
  const headers = await benchHeaders(kinds[label], base, password, `ab-${label}`)
  const probe = await fetch(`${base}/bench/items`, { headers })
  await probe.arrayBuffer()
  if (probe.status !== 200) throw new HarnessError(`${label}: GET /bench/items answered ${probe.status}`)
  return { label, proc, url: `${base}/bench/items`, headers, rounds: [] }
}

async function run (g, secs) {
  const before = cpuTicks(g.proc.pid)
  const r = await drive({ url: g.url, headers: g.headers, connections, seconds: secs, rate })
  const ticks = cpuTicks(g.proc.pid) - before
  if (r.non2xx > 0 || r.errors > 0) throw new HarnessError(`${g.label}: ${r.non2xx} non-2xx and ${r.errors} errors`)
  return { rps: r.ok / r.secs, cpuUs: (ticks * 10_000) / Math.max(1, r.ok) }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }
const fmt = (n, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })

try {
  const backendProc = procs.start('backend', [join(HERE, 'backend.js')], { cpu: pin ? '0' : null })
  const backend = `http://127.0.0.1:${await procs.readPort(backendProc)}`
  const a = await startGateway('A', dirA, backend)
  const b = await startGateway('B', dirB, backend)
  for (const g of [a, b]) await run(g, warmup)
  for (let i = 0; i < rounds; i++) {
    // A B, B A, A B, …: neither build always runs first.
    for (const g of i % 2 === 0 ? [a, b] : [b, a]) g.rounds.push(await run(g, seconds))
  }
  console.log(`# A/B: ${kinds.A === kinds.B ? kind : `${kinds.A} (A) against ${kinds.B} (B)`} pipeline, ${stores.A === stores.B ? `${store} store` : `${stores.A} (A) against ${stores.B} (B) store`}, ${rounds} rounds × ${seconds} s, ${connections} connections${rate > 0 ? ` at ${rate} req/s (autocannon)` : ` (${generator})`}${pin ? ', gateways pinned to CPU 1' : ''}`)
  console.log(`A = ${dirA}${process.env.AB_ENV_A ? ` with ${process.env.AB_ENV_A}` : ''}\nB = ${dirB}${process.env.AB_ENV_B ? ` with ${process.env.AB_ENV_B}` : ''}\n`)
  console.log('| round | A req/s | B req/s | B/A req/s | A CPU µs/req | B CPU µs/req | B/A CPU |')
  console.log('|---:|---:|---:|---:|---:|---:|---:|')
  const ratios = []
  const rpsRatios = []
  for (let i = 0; i < rounds; i++) {
    const ra = a.rounds[i]
    const rb = b.rounds[i]
    ratios.push(rb.cpuUs / ra.cpuUs)
    rpsRatios.push(rb.rps / ra.rps)
    console.log(`| ${i + 1} | ${fmt(ra.rps)} | ${fmt(rb.rps)} | ${fmt(rb.rps / ra.rps, 3)} | ${fmt(ra.cpuUs, 1)} | ${fmt(rb.cpuUs, 1)} | ${fmt(rb.cpuUs / ra.cpuUs, 3)} |`)
  }
  const ma = median(a.rounds.map((r) => r.cpuUs))
  const mb = median(b.rounds.map((r) => r.cpuUs))
  console.log(`\nmedian CPU µs/request: A ${fmt(ma, 1)}, B ${fmt(mb, 1)}; B/A per round: median ${fmt(median(ratios), 3)}, range ${fmt(Math.min(...ratios), 3)}–${fmt(Math.max(...ratios), 3)}`)
  console.log(`median req/s: A ${fmt(median(a.rounds.map((r) => r.rps)))}, B ${fmt(median(b.rounds.map((r) => r.rps)))}; B/A per round: median ${fmt(median(rpsRatios), 3)}, range ${fmt(Math.min(...rpsRatios), 3)}–${fmt(Math.max(...rpsRatios), 3)}`)
} finally {
  await procs.stopAll()
  otlpSink?.close()
  if (process.env.AB_KEEP_TMP === '1') console.log(`kept ${tmp} (routes files, each side's stdout and stderr)`)
  else rmSync(tmp, { recursive: true, force: true })
}
