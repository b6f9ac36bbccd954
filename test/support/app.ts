// Test helpers: a gateway app from env-style overrides, always closed after the test, with a
// unique Redis key prefix and a private data directory so runs never touch each other's data.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { buildApp } from '../../src/app.js'
import { ConfigError, loadConfig, type Config } from '../../lib/config.js'
import { tempDir, type Teardownable } from './basics.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A key prefix no other test run uses (REDIS_KEY_PREFIX allows 1-32 of A-Z a-z 0-9 : _ . -). */
export function uniquePrefix (): string {
  return `gwtest:${randomBytes(6).toString('hex')}:`
}

/** Config as the gateway would load it from these variables (no .env). */
export function testConfig (t: Teardownable, env: Record<string, string> = {}): Config {
  return loadConfig({
    ADMIN_PASSWORD: 'test-password',
    LOG_LEVEL: 'silent',
    DATA_DIR: env.DATA_DIR ?? tempDir(t),
    ...(env.STORAGE === 'redis' || env.REDIS_URL !== undefined ? { REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix() } : {}),
    HEALTH_CHECK_INTERVAL_SECONDS: '3600',
    ...env
  }, { dotenv: false })
}

/** Deletes every Redis key under a test prefix (a run only ever removes its own keys). */
export async function cleanRedis (prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } catch {
    // Redis unreachable (an outage test): nothing of ours can be there to clean.
  } finally {
    redis.disconnect()
  }
}

/** Builds an app (not listening) from variables; closed, and its Redis keys removed, at teardown. */
export async function build (t: Teardownable, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = testConfig(t, env)
  const app = await buildApp(config)
  t.teardown(async () => {
    await app.close()
    if (config.storage === 'redis' && config.redis.clusterNodes === null) {
      await cleanRedis(config.redis.keyPrefix, config.redis.url ?? `redis://${config.redis.host}:${config.redis.port}`)
    }
  })
  await app.ready()
  return app
}

/** Builds and listens on 127.0.0.1:0; returns the app and its base URL. */
export async function listen (t: Teardownable, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, url: string }> {
  const app = await build(t, env)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url }
}

/** A ROUTES_FILE written to a temp dir, from service objects. */
export function routesFile (t: Teardownable, services: unknown[]): string {
  const dir = tempDir(t, 'gw-routes-')
  const file = join(dir, 'routes.json')
  writeFileSync(file, JSON.stringify({ services }))
  return file
}

/** The problems a config load reports (one line per problem), or none when it loads. */
export function configProblems (load: () => unknown): string[] {
  try {
    load()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}
