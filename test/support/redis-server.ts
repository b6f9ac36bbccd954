// Real redis-server processes for tests that need Redis to fail: start one on a free port, stop,
// kill, pause or restart it by PID, or start a 3-master Cluster. Never mocks.
//
//   const redis = await startRedis()                    // --save '' --appendonly no
//   const aof = await startRedis({ appendOnly: true })  // appendfsync always, in a temp dir
//   const port = await freePort(); ...; await startRedis({ port })   // "Redis comes up later"
//   await redis.kill('SIGKILL'); await redis.restart(); redis.pause(); redis.resume(); await redis.stop()
//   const cluster = await startCluster(); cluster.nodes -> [{ host, port }]; await cluster.stop()
//   const ha = await startCluster({ masters: 3, replicas: 1 })  // a killed master fails over
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort, sleep } from './basics.js'

const HOST = '127.0.0.1'
const live = new Set<ChildProcess>()
// A crashed test must not leave redis-servers behind.
process.once('exit', () => { for (const child of live) child.kill('SIGKILL') })

export interface RedisServerOptions {
  /** Default: a free port. */
  port?: number
  /** `--appendonly yes --appendfsync always` (every acknowledged write is fsynced). */
  appendOnly?: boolean
  /** Working directory (AOF, cluster config); default: a new temp dir, removed by stop(). */
  dir?: string
  /** Extra redis-server arguments, e.g. ['--requirepass', 'secret']. */
  args?: string[]
}

export interface RedisServer {
  readonly host: string
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  readonly dir: string
  /** PID of the current process (changes after restart()). */
  readonly pid: number
  /** Sends a signal and waits for the process to exit (SIGKILL: no shutdown, no final fsync). */
  kill (signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
  /** SIGSTOP: the socket stays open and nothing answers. */
  pause (): void
  /** SIGCONT */
  resume (): void
  /** Starts it again on the same port, directory and arguments; resolves when it answers PING. */
  restart (): Promise<void>
  /** SIGTERM (SIGKILL after 2 s), then removes the temp dir it created. Idempotent. */
  stop (): Promise<void>
}

/** Sends one inline command over a raw socket and returns the reply text, or null on any failure. */
export async function rawCommand (port: number, command: string, timeoutMs = 500): Promise<string | null> {
  return await new Promise((resolve) => {
    const socket = connect(port, HOST)
    let data = ''
    const done = (value: string | null): void => { socket.destroy(); resolve(value) }
    socket.setTimeout(timeoutMs, () => done(null))
    socket.on('error', () => done(null))
    socket.on('data', (chunk) => {
      data += chunk.toString()
      // Simple replies end at the first CRLF; bulk replies ($len) once the body has arrived.
      const m = /^\$(\d+)\r\n/.exec(data)
      if (m === null ? data.includes('\r\n') : data.length >= m[0].length + Number(m[1]) + 2) done(data)
    })
    socket.on('connect', () => socket.write(command + '\r\n'))
  })
}

/** Resolves once `PING` answers (`+PONG`, or `-NOAUTH` with requirepass; polls every 25 ms). */
export async function waitForRedis (port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const reply = await rawCommand(port, 'PING')
    if (reply?.startsWith('+PONG') === true || reply?.startsWith('-NOAUTH') === true) return
    await sleep(25)
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`)
}

/**
 * A free port was chosen by closing a listener on port 0, so another socket (a client's ephemeral
 * port, another server started in between) may take it before redis-server binds it: a start that
 * failed that way is retried on fresh ports. Only ports this module chose are retried.
 */
async function withFreshPorts<T> (start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (err) {
      if (attempt >= attempts || !/Address already in use|exited \(1\)/.test((err as Error).message)) throw err
    }
  }
}

export async function startRedis (opts: RedisServerOptions = {}): Promise<RedisServer> {
  if (opts.port === undefined) return await withFreshPorts(async () => await startRedisOn(await freePort(), opts))
  return await startRedisOn(opts.port, opts)
}

async function startRedisOn (port: number, opts: RedisServerOptions): Promise<RedisServer> {
  const ownDir = opts.dir === undefined
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'gw-redis-'))
  const args = [
    '--port', String(port), '--bind', HOST, '--dir', dir, '--save', '',
    ...(opts.appendOnly === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(opts.args ?? [])
  ]
  let child: ChildProcess
  try {
    child = await spawnRedis(args, port)
  } catch (err) {
    if (ownDir) rmSync(dir, { recursive: true, force: true })
    throw err
  }
  let stopped = false
  let paused = false

  const waitExit = async (c: ChildProcess, signal: NodeJS.Signals): Promise<void> => {
    if (c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()))
    c.kill(signal)
    await exited
  }

  const server: RedisServer = {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    get pid () { return child.pid as number },
    async kill (signal = 'SIGKILL') {
      if (paused) server.resume() // a stopped process handles SIGTERM only once continued
      await waitExit(child, signal)
    },
    pause () { paused = true; child.kill('SIGSTOP') },
    resume () { paused = false; child.kill('SIGCONT') },
    async restart () {
      await waitExit(child, 'SIGKILL')
      paused = false
      child = await spawnRedis(args, port)
    },
    async stop () {
      if (stopped) return
      stopped = true
      if (paused) server.resume()
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
      await waitExit(child, 'SIGTERM')
      clearTimeout(timer)
      if (ownDir) rmSync(dir, { recursive: true, force: true })
    }
  }
  return server
}

async function spawnRedis (args: string[], port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  child.once('exit', () => live.delete(child))
  // redis-server logs to stdout, a failure to bind included: the last of it goes into the error.
  let output = ''
  const keep = (d: Buffer): void => { output = (output + d.toString()).slice(-2000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const failed = new Promise<never>((_resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) on port ${port}: ${output}`)))
  })
  failed.catch(() => {}) // only observed during startup
  try {
    await Promise.race([waitForRedis(port), failed])
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return child
}

export interface RedisCluster {
  readonly servers: RedisServer[]
  /** For REDIS_CLUSTER_NODES / ioredis Cluster. */
  readonly nodes: Array<{ host: string, port: number }>
  stop (): Promise<void>
}

export interface ClusterOptions {
  /** Default 3. */
  masters?: number
  /** Replicas per master (default 0): with 1, a killed master fails over to its replica. */
  replicas?: number
  /** Extra redis-server arguments for every node, e.g. ['--cluster-require-full-coverage', 'no']. */
  args?: string[]
}

/**
 * Starts masters × (1 + replicas) redis-server processes with cluster mode on, joins them, and
 * waits for cluster_state:ok everywhere and every replica's link to its master. Node timeout 2 s.
 */
export async function startCluster (opts: ClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3
  const replicas = opts.replicas ?? 0
  const servers: RedisServer[] = []
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      // The cluster bus port defaults to port + 10000, which may be taken or out of range: pick one.
      servers.push(await withFreshPorts(async () => await startRedisOn(await freePort(), {
        args: ['--cluster-enabled', 'yes', '--cluster-port', String(await freePort()), '--cluster-config-file', 'nodes.conf',
          '--cluster-node-timeout', '2000', ...(opts.args ?? [])]
      })))
    }
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...servers.map((s) => `${HOST}:${s.port}`),
      '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 20_000 })
    const deadline = Date.now() + 15_000
    for (const s of servers) {
      while ((await rawCommand(s.port, 'CLUSTER INFO'))?.includes('cluster_state:ok') !== true) {
        if (Date.now() > deadline) throw new Error(`cluster node ${s.port} not ok within 15 s`)
        await sleep(50)
      }
      // A replica takes part in a failover only once it has synced with its master.
      while (true) {
        const info = await rawCommand(s.port, 'INFO replication') ?? ''
        if (info.includes('role:master') || info.includes('master_link_status:up')) break
        if (Date.now() > deadline) throw new Error(`cluster replica ${s.port} not linked within 15 s`)
        await sleep(50)
      }
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()))
    throw err
  }
  return {
    servers,
    nodes: servers.map((s) => ({ host: s.host, port: s.port })),
    async stop () { await Promise.all(servers.map((s) => s.stop())) }
  }
}

export interface ClusterMaster {
  server: RedisServer
  /** Slot ranges [first, last] it serves. */
  ranges: Array<[number, number]>
}

/** The masters not flagged failed, from CLUSTER NODES asked of `via` (default: the first node). */
export async function clusterMasters (cluster: RedisCluster, via: RedisServer = cluster.servers[0]): Promise<ClusterMaster[]> {
  const text = await rawCommand(via.port, 'CLUSTER NODES', 2000) ?? ''
  const masters: ClusterMaster[] = []
  for (const line of text.split('\n')) {
    // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges...>
    const parts = line.trim().split(' ')
    if (parts.length < 8 || !parts[2].includes('master') || parts[2].includes('fail')) continue
    const port = Number(parts[1].split('@')[0].split(':').at(-1))
    const server = cluster.servers.find((s) => s.port === port)
    if (server === undefined) continue
    const ranges = parts.slice(8).filter((r) => !r.startsWith('[')).map((r) => {
      const [lo, hi] = r.split('-').map(Number)
      return [lo, hi ?? lo] as [number, number]
    })
    masters.push({ server, ranges })
  }
  return masters
}

/** The master serving `key`'s slot (CLUSTER KEYSLOT and CLUSTER NODES asked of `via`). */
export async function masterOf (cluster: RedisCluster, key: string, via: RedisServer = cluster.servers[0]): Promise<RedisServer> {
  const slot = Number(/^:(\d+)/.exec(await rawCommand(via.port, `CLUSTER KEYSLOT ${key}`, 2000) ?? '')?.[1])
  const owner = (await clusterMasters(cluster, via)).find((m) => m.ranges.some(([lo, hi]) => slot >= lo && slot <= hi))
  if (owner === undefined) throw new Error(`no master serves ${key} (slot ${slot})`)
  return owner.server
}
