// What the response-cache tests share: a backend whose answers are scripted per request, and a
// gateway (in process, listening on port 0) with one caching service `c` at `/c` in front of it.
import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { Teardownable } from '../../support/basics.js'
import { listen, routesFile } from '../../support/app.js'
import { startBackend, type Backend } from '../../support/backends.js'
import { http, type HttpOptions, type HttpResponse } from '../../support/http.js'
import { until } from '../../support/basics.js'

export interface Answer {
  status?: number
  headers?: Record<string, string | string[]>
  /** Default: `<url> #<n>` (n counts the backend's requests), so a test sees which fetch it got. */
  body?: string | Buffer
}

/** Every answer is 200 `Cache-Control: max-age=60` unless the script says otherwise. */
export type Script = (req: IncomingMessage, n: number) => Answer

export const fresh: Script = () => ({})

export async function scriptedBackend (t: Teardownable, script: Script = fresh): Promise<Backend & { script: (s: Script) => void }> {
  let current = script
  const backend = await startBackend((req, res, _body, n) => {
    const a = current(req, n)
    const body = a.body ?? `${req.method ?? ''} ${req.url ?? ''} #${n}`
    res.writeHead(a.status ?? 200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', ...a.headers })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  t.teardown(() => backend.close())
  return Object.assign(backend, { script: (s: Script) => { current = s } })
}

export interface CachedGateway {
  app: FastifyInstance
  port: number
  get (path: string, opts?: HttpOptions): Promise<HttpResponse>
}

/** A gateway whose service `c` (prefix `/c`) caches with `cache` settings, in front of `backendUrl`. */
export async function cachedGateway (t: Teardownable, backendUrl: string, cache: Record<string, unknown> = {}, env: Record<string, string> = {}, service: Record<string, unknown> = {}, others: unknown[] = []): Promise<CachedGateway> {
  const ROUTES_FILE = routesFile(t, [{ name: 'c', prefix: '/c', backends: [{ url: backendUrl }], rateLimit: false, cache, ...service }, ...others])
  const { app } = await listen(t, { ROUTES_FILE, ...env })
  const port = (app.server.address() as { port: number }).port
  return { app, port, get: async (path, opts) => await http(port, path, opts) }
}

/** Polls `path` until an answer is no longer a hit (its entry went stale); returns that answer. */
export async function firstNonHit (gw: CachedGateway, path: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
  let last: HttpResponse | null = null
  await until(async () => {
    last = await gw.get(path, { headers })
    return last.headers['cache-status'] !== 'gateway; hit'
  }, 10_000, 100)
  return last as unknown as HttpResponse
}
