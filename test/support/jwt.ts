// Shared by the JWT tests: a gateway listening on port 0 in front of a real echo backend, with a
// routes file that may list issuers, and a real local IdP (test/support/idp.ts).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { listen } from './app.js'
import { startBackend, type Backend } from './backends.js'
import { tempDir, type Teardownable, until } from './basics.js'
import { startIdp, type Alg, type Idp } from './idp.js'

export async function idp (t: Teardownable, algs: Alg[] = ['RS256'], options: { audience?: string } = {}): Promise<Idp> {
  const i = await startIdp(algs, options)
  t.teardown(() => i.close())
  return i
}

export async function backend (t: Teardownable): Promise<Backend> {
  const b = await startBackend()
  t.teardown(() => b.close())
  return b
}

export interface Gateway {
  app: FastifyInstance
  port: number
}

/** A gateway with `services` (default one `/api` service on `b`) and optional routes-file issuers. */
export async function gateway (t: Teardownable, env: Record<string, string>, services: unknown[], issuers?: unknown[]): Promise<Gateway> {
  const dir = tempDir(t, 'gw-jwt-')
  const file = join(dir, 'routes.json')
  writeFileSync(file, JSON.stringify(issuers === undefined ? { services } : { services, issuers }))
  const { app, url } = await listen(t, { ROUTES_FILE: file, RATE_LIMIT_BURST: '10000', RATE_LIMIT_RPM: '100000', ...env })
  return { app, port: Number(new URL(url).port) }
}

/** Waits until every issuer's keys were fetched once. */
export async function keysLoaded (app: FastifyInstance): Promise<void> {
  const ok = await until(() => [...app.jwtAuth.keySets.values()].every((k) => k.keys !== null), 10_000, 10)
  if (!ok) throw new Error('the gateway never fetched its token keys')
}

export const api = (url: string, extra: Record<string, unknown> = {}) => ({ name: 'api', prefix: '/api', backends: [{ url }], ...extra })

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
