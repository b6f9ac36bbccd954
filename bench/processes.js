// Child processes of the benchmark (spawned, optionally pinned with taskset, always stopped by
// their own PID) and their resident memory, read from /proc.
import { spawn } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
// One free-port helper for tests and the benchmark (plain JS, so bare Node can load it).
export { freePort } from '../test/support/basics.js'

/** A failure of the harness itself (as opposed to a missed target): exit status 1. */
export class HarnessError extends Error {}

/**
 * @param {{ dir: string, node: string, pin: boolean }} opts  dir holds every log file; node is the
 *   binary all children run on; pin enables `taskset -c <cpu>`.
 */
export function createProcesses ({ dir, node, pin }) {
  const children = []

  const openLog = (name) => openSync(join(dir, `${name}.log`), 'w')

  /** Spawns `node <args>`: stdout to a pipe or to `stdoutLog` (a file in dir), stderr to a file. */
  function start (name, args, { env = process.env, cpu = null, stdoutLog = null } = {}) {
    const stderrFd = openLog(`${name}.stderr`)
    const stdoutFd = stdoutLog ? openLog(stdoutLog) : 'pipe'
    const [cmd, argv] = pin && cpu !== null ? ['taskset', ['-c', cpu, node, ...args]] : [node, args]
    const child = spawn(cmd, argv, { cwd: dir, env, stdio: ['ignore', stdoutFd, stderrFd] })
    closeSync(stderrFd)
    if (typeof stdoutFd === 'number') closeSync(stdoutFd)
    const proc = { name, child, pid: child.pid, exited: null, stdoutLog: stdoutLog && `${stdoutLog}.log` }
    child.once('exit', (code, signal) => { proc.exited = { code, signal } })
    children.push(proc)
    return proc
  }

  /** The last lines the process wrote (its stderr, and its stdout log file if it has one). */
  function tail (proc, lines = 15) {
    return [`${proc.name}.stderr.log`, proc.stdoutLog].filter(Boolean).map((f) => {
      try {
        return readFileSync(join(dir, f), 'utf8').trim().split('\n').slice(-lines).join('\n')
      } catch { return '' }
    }).filter(Boolean).join('\n')
  }

  /** Reads the first stdout line (the port) of bench/backend.js or bench/baseline.js. */
  async function readPort (proc, timeoutMs = 20_000) {
    let buf = ''
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new HarnessError(`${proc.name}: no port printed within ${timeoutMs} ms\n${tail(proc)}`)), timeoutMs)
      proc.child.stdout.setEncoding('utf8')
      proc.child.stdout.on('data', (d) => {
        buf += d
        const m = /^(\d+)\n/.exec(buf)
        if (m) { clearTimeout(timer); resolve(Number(m[1])) }
      })
      proc.child.once('exit', (code) => { clearTimeout(timer); reject(new HarnessError(`${proc.name} exited (${code}) before listening\n${tail(proc)}`)) })
    })
  }

  /** Polls `${base}/health` until 200; throws with the process's output if it exits first. */
  async function waitHealthy (proc, base, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (proc.exited) throw new HarnessError(`${proc.name} exited (code ${proc.exited.code}) while starting:\n${tail(proc)}`)
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) })
        await res.arrayBuffer()
        if (res.status === 200) return
      } catch {}
      await sleep(150)
    }
    throw new HarnessError(`${proc.name}: /health did not answer 200 within ${timeoutMs} ms\n${tail(proc)}`)
  }

  /** SIGTERM to each of `list` still running (by PID), SIGKILL after 8 s; resolves once all exited. */
  async function stop (list) {
    const alive = list.filter((p) => !p.exited)
    for (const p of alive) { try { process.kill(p.pid, 'SIGTERM') } catch {} }
    const deadline = Date.now() + 8000
    while (alive.some((p) => !p.exited) && Date.now() < deadline) await sleep(100)
    for (const p of alive.filter((p) => !p.exited)) { try { process.kill(p.pid, 'SIGKILL') } catch {} }
    while (alive.some((p) => !p.exited) && Date.now() < deadline + 2000) await sleep(50)
  }

  /** Stops every child still running. */
  async function stopAll () {
    await stop(children)
  }

  return { start, tail, readPort, waitHealthy, stop, stopAll }
}

export function rssKb (pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch { return 0 }
}

export function childPids (ppid) {
  const out = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) === ppid) out.push(Number(d))
    } catch {}
  }
  return out
}

/**
 * Samples, every `intervalMs`, the RSS of the cases in `loaded` (a Set the caller fills while a
 * case is under load) into `case.peakRssKb`; a case with `tree` counts its child processes too.
 */
export function startRssSampler (loaded, intervalMs = 200) {
  const timer = setInterval(() => {
    for (const c of loaded) {
      if (!c.proc) continue
      let kb = rssKb(c.proc.pid)
      if (c.tree) for (const pid of childPids(c.proc.pid)) kb += rssKb(pid)
      c.peakRssKb = Math.max(c.peakRssKb ?? 0, kb)
    }
  }, intervalMs)
  timer.unref()
  return timer
}
