// `engines` tells the truth, and a direct start on an unsupported Node fails with one clear line
// (src/server.ts checks before anything imports node:sqlite).
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t from 'tap'
import { SUPPORTED_NODE_RANGE, nodeSupported, unsupportedNodeMessage } from '../../lib/node-version.js'
import { REPO_ROOT, SERVER_JS } from '../support/gateway-process.js'

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string }, dependencies: Record<string, string>
}

t.test('package.json engines is the range the entry checks', async (t) => {
  t.equal(pkg.engines.node, SUPPORTED_NODE_RANGE)
  t.equal(SUPPORTED_NODE_RANGE, '^22.19.0 || ^24.0.0 || ^26.0.0')
})

t.test('every runtime dependency admits the lowest version of each supported line', async (t) => {
  // A small reader for the range forms dependencies use here: ">=a.b.c", "^a.b.c", "a || b".
  const admits = (range: string, v: [number, number, number]): boolean => range.split('||').some((part) => {
    const m = /^\s*(\^|>=\s*)?(\d+)(?:\.(\d+|x))?(?:\.(\d+|x))?\s*$/.exec(part)
    if (m === null) return true // a form this reader does not know: not judged here
    const want = [Number(m[2]), Number(m[3] ?? 0) || 0, Number(m[4] ?? 0) || 0]
    const cmp = v[0] - want[0] || v[1] - want[1] || v[2] - want[2]
    return m[1] === '^' ? v[0] === want[0] && cmp >= 0 : cmp >= 0
  })
  const lows = SUPPORTED_NODE_RANGE.split('||').map((p) => p.trim().slice(1).split('.').map(Number) as [number, number, number])
  const seen = new Set<string>()
  const visit = (name: string, from: string): void => {
    // Node's lookup: node_modules of this folder, then of each parent up to the repository.
    let file = ''
    for (let dir = from; ; dir = dirname(dir)) {
      file = join(dir, 'node_modules', name, 'package.json')
      if (existsSync(file) || dir === REPO_ROOT || dir === dirname(dir)) break
    }
    if (!existsSync(file) || seen.has(file)) return
    seen.add(file)
    const dep = JSON.parse(readFileSync(file, 'utf8')) as { engines?: { node?: string }, dependencies?: Record<string, string> }
    const range = dep.engines?.node
    if (range !== undefined) {
      for (const low of lows) t.ok(admits(range, low), `${name} (${range}) runs on Node ${low.join('.')}`)
    }
    for (const child of Object.keys(dep.dependencies ?? {})) visit(child, join(file, '..'))
  }
  for (const name of Object.keys(pkg.dependencies)) visit(name, REPO_ROOT)
  t.ok(seen.size > 20, 'the whole runtime tree was read')
})

t.test('nodeSupported follows the ranges', async (t) => {
  t.ok(nodeSupported('24.21.0'))
  t.ok(nodeSupported('22.19.0'))
  t.ok(nodeSupported('26.1.0'))
  t.notOk(nodeSupported('22.13.1'))
  t.notOk(nodeSupported('20.20.2'))
  t.notOk(nodeSupported('23.11.0'))
  t.notOk(nodeSupported('25.0.0'))
  t.match(unsupportedNodeMessage('20.20.2', '/usr/bin/node'), /needs Node\.js \^22\.19\.0 \|\| \^24\.0\.0 \|\| \^26\.0\.0.*Node\.js 20\.20\.2/)
})

const SYSTEM_NODE = '/usr/bin/node'
const systemVersion = existsSync(SYSTEM_NODE) ? spawnSync(SYSTEM_NODE, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim() : ''

t.test('a direct start on the system Node 20 exits 1 with one line naming the required version', async (t) => {
  // These machines' system Node is 20 (past its end of life); npm scripts use the pinned Node 24.
  t.match(systemVersion, /^20\./, `${SYSTEM_NODE} is Node 20`)
  const res = spawnSync(SYSTEM_NODE, [SERVER_JS], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, ADMIN_PASSWORD: 'x', PORT: '0' },
    timeout: 20_000
  })
  t.equal(res.status, 1)
  t.equal(res.stdout, '')
  const lines = res.stderr.trimEnd().split('\n')
  t.equal(lines.length, 1, res.stderr)
  t.match(lines[0], /needs Node\.js \^22\.19\.0 \|\| \^24\.0\.0 \|\| \^26\.0\.0/)
  t.match(lines[0], new RegExp(`this is Node\\.js ${systemVersion.replaceAll('.', '\\.')}`))
  t.notMatch(res.stderr, /ERR_UNKNOWN_BUILTIN_MODULE|node:sqlite'|at /)
})
