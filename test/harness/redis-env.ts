// Environment for a gateway in Redis mode on a test-owned redis-server, plus small Redis probes.
import { randomBytes } from 'node:crypto'
import { rawCommand } from './redis-server.js'

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
