// Environment for a gateway in Redis mode on a test-owned redis-server, plus small Redis probes.
import { uniquePrefix } from './app.js'
import type { Teardownable } from './basics.js'
import { startGateway } from './gateway-process.js'
import { rawCommand, startRedis } from './redis-server.js'
import { service } from './suite.js'
import { echoUpstream } from './upstreams.js'

export function redisEnv (url: string, prefix = uniquePrefix()): Record<string, string> {
  return { STORAGE: 'redis', REDIS_URL: url, REDIS_KEY_PREFIX: prefix }
}

/** DBSIZE of the redis-server on `port`, or -1 when it does not answer. */
export async function dbsize (port: number): Promise<number> {
  const reply = await rawCommand(port, 'DBSIZE', 1000)
  const m = reply === null ? null : /^:(\d+)/.exec(reply)
  return m === null ? -1 : Number(m[1])
}

/**
 * Three gateways on one test-owned redis-server, all proxying `/api/echo` to one echo upstream
 * (the LD/SC cases that need instances sharing a store). Everything is stopped at teardown.
 */
export async function threeGatewaysOnRedis (t: Teardownable) {
  const echo = await echoUpstream(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const env = redisEnv(redis.url)
  const services = [service('echo', '/api/echo', echo.url)]
  const gws = await Promise.all([0, 1, 2].map(async () => await startGateway(t, { services, env })))
  return { echo, redis, env, services, gws }
}
