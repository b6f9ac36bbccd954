// `npm run demo`: the quick start that works. The compiled gateway on the embedded store, with two
// sample backends for user-service and one for auth-service (docker/sample-backend.js) on free
// loopback ports and a routes file pointing at them; port 8081 (or PORT); ADMIN_PASSWORD when set,
// else a generated one. Prints the password it used and the next three curl commands. A local demo
// token issuer (examples/demo-issuer.js) is JWT_ISSUER, so a minted token works too (docs/jwt.md).
// SIGINT/SIGTERM stop the gateway (it drains), then the backends, then the demo (exit 0).
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SERVER = join(ROOT, 'dist/src/server.js')
const BACKEND = join(ROOT, 'docker/sample-backend.js')
const ISSUER = join(ROOT, 'examples/demo-issuer.js')

if (!existsSync(SERVER)) {
  process.stderr.write('demo: dist/ is missing; run `npm ci` (or `npm run build`) first\n')
  process.exit(1)
}

/** A loopback port nobody listens on now. */
function freePort () {
  return new Promise((resolve, reject) => {
    const srv = createServer().once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

const children = []
/**
 * Its own process group (detached): a Ctrl-C in the terminal reaches only this script, which then
 * stops the gateway with one signal (a second one would skip its drain) and the backends after it.
 */
function start (name, args, env, stdio) {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio, detached: true })
  child.name = name
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  children.push(child)
  return child
}

const port = Number(process.env.PORT || 8081)
const host = process.env.HOST || '127.0.0.1'
const password = process.env.ADMIN_PASSWORD || randomBytes(12).toString('base64url')
const ownData = !process.env.DATA_DIR
const dataDir = process.env.DATA_DIR || mkdtempSync(join(tmpdir(), 'gw-demo-'))

const backends = []
for (const name of ['user-service-1', 'user-service-2', 'auth-service']) {
  const p = await freePort()
  start(name, [BACKEND], { PORT: String(p), SERVICE_NAME: name }, 'ignore')
  backends.push({ name, url: `http://127.0.0.1:${p}` })
}
const issuerPort = await freePort()
start('demo-issuer', [ISSUER], { PORT: String(issuerPort) }, 'ignore')
const issuer = `http://127.0.0.1:${issuerPort}`
const routesFile = join(dataDir, 'demo-routes.json')
writeFileSync(routesFile, JSON.stringify({
  services: [
    { name: 'user-service', prefix: '/api/users', backends: backends.slice(0, 2).map((b) => ({ url: b.url })), strategy: 'round-robin' },
    { name: 'auth-service', prefix: '/api/auth', backends: [{ url: backends[2].url }] }
  ]
}, null, 2))

const gateway = start('gateway', ['--max-semi-space-size=16', SERVER], {
  HOST: host,
  PORT: String(port),
  STORAGE: 'embedded',
  DATA_DIR: dataDir,
  ROUTES_FILE: routesFile,
  ADMIN_PASSWORD: password,
  ADMIN_AUTH_ENABLED: 'true',
  // Its keys are fetched in the background: the gateway starts without waiting for the issuer.
  JWT_ISSUER: issuer,
  HEALTH_CHECK_INTERVAL_SECONDS: process.env.HEALTH_CHECK_INTERVAL_SECONDS || '5'
}, ['ignore', 'inherit', 'inherit'])

let stopping = false
async function stop (code) {
  if (stopping) return
  stopping = true
  if (gateway.exitCode === null && gateway.signalCode === null) gateway.kill('SIGTERM')
  await gateway.exited
  for (const c of children) if (c !== gateway && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
  await Promise.all(children.map((c) => c.exited))
  if (ownData) rmSync(dataDir, { recursive: true, force: true })
  process.exit(code)
}
process.on('SIGINT', () => { stop(0) })
process.on('SIGTERM', () => { stop(0) })
// Anything that leaves early (the gateway refusing its config, a busy port) ends the demo too.
for (const c of children) {
  c.exited.then(({ code }) => {
    if (stopping) return
    process.stderr.write(`demo: ${c.name} exited (code ${code}); stopping\n`)
    stop(1)
  })
}

const base = `http://localhost:${port}`
for (let i = 0; ; i++) {
  const ok = await fetch(`http://${host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host}:${port}/health`).then((r) => r.ok, () => false)
  if (ok) break
  if (i > 300 || stopping) {
    if (!stopping) process.stderr.write('demo: the gateway did not become healthy in 30 s\n')
    await stop(1)
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
}

const q = (s) => `'${s.replaceAll("'", "'\\''")}'`
process.stdout.write(`
Demo gateway on ${base} (embedded store in ${dataDir})
  user-service /api/users -> ${backends[0].url}, ${backends[1].url} (round-robin)
  auth-service /api/auth  -> ${backends[2].url}
Admin user: admin   password: ${password}${process.env.ADMIN_PASSWORD ? ' (from ADMIN_PASSWORD)' : ' (generated; set ADMIN_PASSWORD to choose one)'}

Next:
  curl ${base}/health
  curl -u ${q(`admin:${password}`)} -X POST ${base}/admin/apikeys -H 'Content-Type: application/json' -d '{"name":"my-app","rate_limit":100}'
  curl -H "X-API-Key: <data.raw_key from the answer above>" ${base}/api/users/me

Or as a JWT consumer, with a token minted by the demo issuer at ${issuer}:
  TOKEN=$(curl -s '${issuer}/token?sub=demo-user')
  curl -H "Authorization: Bearer $TOKEN" ${base}/api/users/me

Ctrl-C stops the gateway and the backends.
`)
