// Counting the gateway's Redis round trips (docs/performance.md): a round trip is one command the gateway
// sends; commands a Lua script calls inside Redis are not round trips, although `INFO
// commandstats` counts them too.
import { Redis } from 'ioredis'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

/** A connected client, or the Error that prevented connecting (never retries). */
export async function connectRedis (url) {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return client
  } catch (err) {
    client.disconnect()
    return err
  }
}

/** `{ command: calls }` from `INFO commandstats` (server-wide counters). */
export async function commandstats (redis) {
  const calls = {}
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim())
    if (m) calls[m[1]] = Number(m[2])
  }
  return calls
}

/** Local ports of the TCP connections `pid` holds to `redisPort` (from /proc). */
export function redisSocketsOf (pid, redisPort) {
  const inodes = new Set()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1])
    } catch {}
  }
  const ports = new Set()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(file, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || !inodes.has(f[9])) continue
      if (parseInt(f[2].split(':')[1], 16) === redisPort) ports.add(parseInt(f[1].split(':')[1], 16))
    }
  }
  return ports
}

/**
 * Watches MONITOR while `drive()` sends traffic to the gateway process `pid`, and counts the
 * commands sent on that process's own Redis sockets (`top`) and those its scripts called inside
 * Redis (`inScripts`). `drive` resolves to the number of requests it made.
 */
export async function monitorSample (redis, { pid, redisPort, drive }) {
  let ports
  try {
    ports = redisSocketsOf(pid, redisPort)
  } catch (err) {
    return { error: `cannot read the gateway's sockets from /proc: ${err.message}` }
  }
  if (ports.size === 0) return { error: 'the gateway holds no connection to the Redis port' }
  let mon
  try {
    mon = await redis.monitor()
  } catch (err) {
    return { error: `MONITOR refused: ${err.message}` }
  }
  const top = {}
  const inScripts = {}
  const add = (target, cmd, n = 1) => { target[cmd] = (target[cmd] ?? 0) + n }
  // Lua lines carry no client address. Redis 7.0 prints a script's calls right after its
  // EVAL/EVALSHA line, later versions right before it: a run of `lua` lines belongs to the
  // preceding script call if that one has none yet, otherwise to the next top-level line.
  let last = null
  let pending = {}
  mon.on('monitor', (_time, args, source) => {
    const cmd = String(args[0] ?? '').toLowerCase()
    if (source === 'lua') {
      if (!last?.acceptsLua) add(pending, cmd)
      else if (last.gateway) add(inScripts, cmd)
      return
    }
    const gateway = ports.has(Number(String(source).split(':').pop()))
    const script = /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/.test(cmd)
    const hadPending = Object.keys(pending).length > 0
    if (script && gateway) for (const [k, n] of Object.entries(pending)) add(inScripts, k, n)
    pending = {}
    last = { gateway, acceptsLua: script && !hadPending }
    if (gateway) add(top, cmd)
  })
  // Lines still buffered when we disconnect reach ioredis after it has left monitoring mode and
  // are taken for replies to no command ("Command queue state error"): ignore them, and the error.
  mon.on('error', () => {})
  await sleep(200)
  const requests = await drive()
  await sleep(300)
  mon.removeAllListeners('monitor')
  mon.disconnect()
  const topTotal = Object.values(top).reduce((a, b) => a + b, 0)
  return { requests, top, inScripts, topTotal, perRequest: requests > 0 ? topTotal / requests : NaN, sockets: ports.size }
}

/** Deletes every key under `prefix` (SCAN + UNLINK); returns how many. */
export async function deleteKeys (redis, prefix) {
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) deleted += await redis.unlink(...keys)
  } while (cursor !== '0')
  return deleted
}
