// `node bench/jwt-verify.js` (after `npm run build`): what a JWT costs the gateway, by algorithm
// (docs/jwt.md#cost). Uses the gateway's own verifier (dist/plugins/jwt/verifier.js) and key set,
// fed by a JWKS served on loopback, and reports CPU µs per token for
//   - a first-seen token: decode, choose the issuer, one signature check (jose), claims, cache it;
//   - a repeated token: SHA-256 of the token and a cache lookup, no signature check.
// BENCH_JWT_TOKENS (default 500) tokens per algorithm, each verified once, in sequence.
import { generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:http'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK, SignJWT } from 'jose'
import pino from 'pino'
import { Agent } from 'undici'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const DIST = join(ROOT, 'dist', 'plugins', 'jwt')
if (!existsSync(join(DIST, 'verifier.js'))) {
  console.error('bench/jwt-verify.js: dist/ is missing; run `npm run build` first')
  process.exit(1)
}
const { KeySet } = await import(join(DIST, 'key-sets.js'))
const { TokenVerifier } = await import(join(DIST, 'verifier.js'))

const N = Math.max(10, Number(process.env.BENCH_JWT_TOKENS ?? 500))
const KEYS = {
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: () => generateKeyPairSync('ed25519')
}
const pairs = Object.entries(KEYS).map(([alg, make]) => ({ alg, kid: `bench-${alg}`, ...make() }))
const jwks = { keys: await Promise.all(pairs.map(async (p) => ({ ...(await exportJWK(p.publicKey)), kid: p.kid, alg: p.alg, use: 'sig' }))) }

const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks)) })
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const issuer = 'https://bench.example'
const dispatcher = new Agent()
const keys = new KeySet({ issuer, jwksUrl: `http://127.0.0.1:${server.address().port}/jwks`, dispatcher, log: pino({ level: 'silent' }), onFetch () {} })
if (!await keys.refresh()) throw new Error('could not load the bench JWKS')
const verifier = new TokenVerifier([{ config: { issuer, jwksUrl: null, audiences: ['gw'], algorithms: Object.keys(KEYS) }, keys }], {
  clockToleranceSeconds: 30, consumerClaim: 'sub', forwardToken: true, cacheSize: N * pairs.length + 10, onOutcome () {}
})

const cpuUs = () => { const u = process.cpuUsage(); return u.user + u.system }
const rows = []
for (const p of pairs) {
  const exp = Math.floor(Date.now() / 1000) + 3600
  const tokens = []
  for (let i = 0; i < N; i++) {
    tokens.push(await new SignJWT({ scope: 'read write' }).setProtectedHeader({ alg: p.alg, kid: p.kid, typ: 'JWT' })
      .setIssuer(issuer).setAudience('gw').setSubject(`user-${i}`).setExpirationTime(exp).sign(p.privateKey))
  }
  // Warm up jose's key import and the JIT with tokens not measured.
  for (let i = 0; i < 20; i++) await verifier.check(await new SignJWT({}).setProtectedHeader({ alg: p.alg, kid: p.kid }).setIssuer(issuer).setAudience('gw').setSubject(`w${i}`).sign(p.privateKey), Date.now())
  let start = cpuUs()
  let t0 = performance.now()
  for (const token of tokens) {
    const v = await verifier.check(token, Date.now())
    if (!v.ok) throw new Error(`${p.alg}: a bench token was refused (${v.outcome})`)
  }
  const first = { cpu: (cpuUs() - start) / N, wall: (performance.now() - t0) * 1000 / N }
  start = cpuUs()
  t0 = performance.now()
  const R = N * 20
  for (let i = 0; i < R; i++) verifier.check(tokens[i % N], Date.now())
  const repeated = { cpu: (cpuUs() - start) / R, wall: (performance.now() - t0) * 1000 / R }
  rows.push([p.alg, first.cpu.toFixed(1), first.wall.toFixed(1), repeated.cpu.toFixed(2), repeated.wall.toFixed(2)])
}

console.log(`# JWT verification cost — Node ${process.version}, ${N} tokens per algorithm\n`)
console.log('| alg | first-seen CPU µs/token | first-seen wall µs/token | repeated CPU µs/token | repeated wall µs/token |')
console.log('|---|---:|---:|---:|---:|')
for (const r of rows) console.log(`| ${r.join(' | ')} |`)
keys.close()
await dispatcher.close()
server.close()
