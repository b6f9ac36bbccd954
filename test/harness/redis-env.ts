// Environment for a gateway in Redis mode on a test-owned redis-server, plus small Redis probes.
import { randomBytes } from 'node:crypto'
import { startGateway, type Teardownable } from './gateway-process.js'
import { rawCommand, startRedis } from './redis-server.js'
import { service } from './suite.js'
import { echoUpstream } from './upstreams.js'

/** A fresh key prefix per test run (REDIS_KEY_PREFIX allows 1-32 of A-Z a-z 0-9 : _ . -). */
export function testPrefix (): string {
  return `gwt:${randomBytes(4).toString('hex')}:`
}

export function redisEnv (url: string, prefix = testPrefix()): Record<string, string> {
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
