// The README's quick start, as written, against `npm run demo` (examples/demo.js): the commands
// are read from README.md's "Quick start" section (so the test fails when the README drifts), run
// with real curl over sockets, and the demo then stops cleanly, backends included, on Ctrl-C.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { freePort, sleep, type Teardownable } from '../support/basics.js'
import { REPO_ROOT } from '../support/gateway-process.js'

/** The fenced bash blocks of the README's Quick start, as commands (continuations joined). */
function quickStartCommands (): string[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('\n## Quick start\n')
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1))
  return [...section.matchAll(/```bash\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1].replace(/\\\n\s*/g, '').split('\n'))
    .map((l) => l.trim())
    .filter((l) => l !== '')
}

/** Whether something accepts connections on 127.0.0.1:port. */
function listening (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

interface Demo { pid: number, output: () => string, exited: Promise<number | null> }

async function startDemo (t: Teardownable, env: Record<string, string>): Promise<Demo> {
  // Its own process group, like a terminal's foreground job: Ctrl-C signals the whole group.
  const child = spawn('npm', ['run', 'demo'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} })
  for (let waited = 0; !out.includes('Ctrl-C stops'); waited += 100) {
    if (child.exitCode !== null || waited > 30_000) throw new Error(`demo did not start:\n${out}`)
    await sleep(100)
  }
  return { pid: child.pid as number, output: () => out, exited }
}

/** The sample backends' ports, from the demo's banner lines (`user-service /api/users -> …`). */
function backendPortsOf (output: string, gatewayPort: number): number[] {
  const banner = output.split('\n').filter((l) => / -> http/.test(l)).join('\n')
  return [...new Set([...banner.matchAll(/http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1])))].filter((p) => p !== gatewayPort)
}

function curl (command: string, port: number): { status: number, body: string } {
  // The README's command, untouched, plus: quiet, the status on a last line, and localhost:8081
  // routed to this test's port (the Host header and URL stay as written).
  const cmd = command.replace(/^curl /, `curl -sS -w '\\n%{http_code}' --connect-to localhost:8081:127.0.0.1:${port} `)
  const res = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: 10_000 })
  if (res.status !== 0) throw new Error(`${command} failed (${res.status}): ${res.stderr}`)
  const lines = res.stdout.split('\n')
  return { status: Number(lines.pop()), body: lines.join('\n') }
}

t.test('every curl of the README quick start succeeds, as written, against npm run demo', async (t) => {
  const commands = quickStartCommands()
  const demoLine = commands.find((c) => c.includes('npm run demo'))
  t.ok(demoLine, 'the quick start runs npm run demo')
  const env = Object.fromEntries([...(demoLine ?? '').matchAll(/\b([A-Z_]+)=(\S+)/g)].map((m) => [m[1], m[2]]))
  t.equal(env.ADMIN_PASSWORD, 'change-me')
  const curls = commands.filter((c) => c.startsWith('curl '))
  t.equal(curls.length, 3, 'three curl commands')

  const port = await freePort()
  const demo = await startDemo(t, { ...env, PORT: String(port) })
  t.match(demo.output(), /password: change-me \(from ADMIN_PASSWORD\)/)
  t.equal(demo.output().split('\n').filter((l) => l.startsWith('  curl ') && !l.includes('$TOKEN')).length, 3, 'the demo prints the next three curls')

  let rawKey = ''
  for (const command of curls) {
    const res = curl(command.replaceAll('gw_…', rawKey), port)
    t.ok(res.status >= 200 && res.status < 300, `${command}: ${res.status} ${res.body.slice(0, 200)}`)
    const body = JSON.parse(res.body)
    if (command.includes('/admin/apikeys')) rawKey = body.data.raw_key
    if (command.endsWith('/health') || command.includes('/health ')) t.equal(body.status, 'ok')
    if (command.includes('/api/users/me')) t.match(body, { service: /^user-service-\d$/, url: '/api/users/me', consumer: String })
  }
  t.match(rawKey, /^gw_/, 'the create command returned a key')

  // The banner's JWT commands, as printed: a token from the demo issuer, then a call with it.
  const jwtLines = demo.output().split('\n').filter((l) => l.includes('TOKEN')).map((l) => l.trim())
  t.equal(jwtLines.length, 2, 'the demo prints how to mint a token and call with it')
  let jwtCall = { status: 0, stdout: '' }
  for (let i = 0; i < 100 && jwtCall.status !== 200; i++) {
    if (i > 0) await sleep(100) // the gateway fetches the issuer's keys in the background
    const res = spawnSync('bash', ['-c', `${jwtLines.join('; ')} -sS -w '\n%{http_code}'`], { encoding: 'utf8', timeout: 10_000 })
    const lines = res.stdout.split('\n')
    jwtCall = { status: Number(lines.pop()), stdout: lines.join('\n') }
  }
  t.equal(jwtCall.status, 200, 'the minted token is accepted')
  t.match(JSON.parse(jwtCall.stdout), { url: '/api/users/me', consumer: 'demo-user' }, 'the backend sees the token\'s subject')

  const backendPorts = backendPortsOf(demo.output(), port)
  t.equal(backendPorts.length, 3, 'three sample backends')
  for (const p of [port, ...backendPorts]) t.ok(await listening(p), `${p} is listening`)

  process.kill(-demo.pid, 'SIGINT') // Ctrl-C
  t.equal(await demo.exited, 0, 'the demo exits 0')
  for (const p of [port, ...backendPorts]) t.notOk(await listening(p), `${p} is closed`)
  t.match(demo.output(), /"event":"shutdown_complete"/, 'the gateway drained and stopped')
})

t.test('without ADMIN_PASSWORD the demo generates one, prints it, and SIGTERM stops it', async (t) => {
  const port = await freePort()
  const demo = await startDemo(t, { PORT: String(port) })
  const password = /password: (\S+) \(generated/.exec(demo.output())?.[1]
  t.ok(password !== undefined && password.length >= 16, 'a generated password is printed')
  const auth = `Basic ${Buffer.from(`admin:${password ?? ''}`).toString('base64')}`
  t.equal((await fetch(`http://127.0.0.1:${port}/admin/apikeys`, { headers: { authorization: auth } })).status, 200)
  t.equal((await fetch(`http://127.0.0.1:${port}/admin/apikeys`)).status, 401)
  const backendPorts = backendPortsOf(demo.output(), port)
  process.kill(demo.pid, 'SIGTERM') // npm's pid only, as a process manager would
  t.equal(await demo.exited, 0)
  for (const p of [port, ...backendPorts]) t.notOk(await listening(p), `${p} is closed`)
})
