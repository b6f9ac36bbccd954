// The admin API as the CLI calls it (docs/cli.md): JSON in and out, Basic credentials from the
// environment, and every failure turned into one line that says what went wrong — the gateway's
// own error message when it answered, the network error when it did not.
import type { AdminClientConfig } from '../../lib/config.js'
import { CliFailure } from './io.js'

/** Long enough for a slow store; an admin call that takes longer has gone wrong. */
const REQUEST_TIMEOUT_MS = 30_000

export class AdminClient {
  private readonly authorization: string | null

  constructor (private readonly config: AdminClientConfig) {
    this.authorization = config.password === ''
      ? null
      : 'Basic ' + Buffer.from(`${config.username}:${config.password}`).toString('base64')
  }

  /** Calls `method path` and resolves with the parsed JSON of a 2xx answer, or throws CliFailure. */
  async request<T> (method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.authorization !== null) headers.authorization = this.authorization
    if (body !== undefined) headers['content-type'] = 'application/json'
    let res: Response
    try {
      res = await fetch(this.config.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
    } catch (err) {
      throw new CliFailure(`cannot reach the admin API at ${this.config.url} (${networkReason(err)}); set GATEWAY_ADMIN_URL to where it listens`)
    }
    const text = await res.text()
    let json: unknown
    try { json = JSON.parse(text) } catch { json = undefined }
    if (!res.ok) {
      const message = typeof (json as { message?: unknown } | undefined)?.message === 'string'
        ? (json as { message: string }).message
        : `${res.statusText || 'error'}`
      const hint = res.status === 401
        ? (this.authorization === null ? ' (ADMIN_PASSWORD is not set in the environment or .env)' : ' (check ADMIN_USERNAME and ADMIN_PASSWORD)')
        : ''
      throw new CliFailure(`${method} ${path}: ${res.status} ${message}${hint}`)
    }
    if (json === undefined) throw new CliFailure(`${method} ${path}: ${res.status} but the answer is not JSON; is ${this.config.url} the gateway's admin listener?`)
    return json as T
  }
}

function networkReason (err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return `no answer in ${REQUEST_TIMEOUT_MS / 1000} s`
  const cause = (err as { cause?: { code?: unknown, message?: unknown } }).cause
  if (typeof cause?.code === 'string') return cause.code
  if (typeof cause?.message === 'string') return cause.message
  return err instanceof Error ? err.message : String(err)
}
