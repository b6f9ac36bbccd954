// The one HTTP GET of the key sets (docs/jwt.md#keys-and-rotation): a JWKS or an OpenID Connect
// discovery document, as JSON, bounded in time and size, each failure named by its outcome (the
// label of gateway_jwt_jwks_fetches_total). URLs in messages never show credentials.
import { Agent, interceptors, type Dispatcher } from 'undici'

/** Outcomes of one JWKS (or discovery) fetch, the label set of gateway_jwt_jwks_fetches_total. */
export const FETCH_OUTCOMES = ['ok', 'unchanged', 'unreachable', 'bad_status', 'invalid'] as const
export type FetchOutcome = typeof FETCH_OUTCOMES[number]

export class FetchFailed extends Error {
  constructor (readonly outcome: FetchOutcome, message: string) { super(message) }
}

/** The HTTP client of key fetches: its own small pool (closed with the app), up to 3 redirects. */
export function jwksDispatcher (): Dispatcher {
  return new Agent({ connections: 4, keepAliveTimeout: 10_000 }).compose(interceptors.redirect({ maxRedirections: 3 }))
}

/** A URL as logs may show it: without user information (a JWKS URL may embed credentials). */
function shown (url: string): string {
  try {
    const u = new URL(url)
    u.username = ''
    u.password = ''
    return u.href
  } catch {
    return '(invalid URL)'
  }
}

export interface JsonAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: unknown
}

/** GETs `url` as JSON within `fetchTimeoutMs` and `maxBytes`; throws FetchFailed otherwise. */
export async function getJson (dispatcher: Dispatcher, url: string, p: { fetchTimeoutMs: number, maxBytes: number }): Promise<JsonAnswer> {
  let res: Dispatcher.ResponseData
  try {
    const u = new URL(url)
    res = await dispatcher.request({
      origin: u.origin,
      path: `${u.pathname}${u.search}`,
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: p.fetchTimeoutMs,
      bodyTimeout: p.fetchTimeoutMs,
      signal: AbortSignal.timeout(p.fetchTimeoutMs)
    })
  } catch (err) {
    throw new FetchFailed('unreachable', `${shown(url)}: ${(err as Error).message}`)
  }
  if (res.statusCode !== 200) {
    res.body.resume()
    throw new FetchFailed('bad_status', `${shown(url)} answered ${res.statusCode}`)
  }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > p.maxBytes) {
        res.body.destroy()
        throw new FetchFailed('invalid', `${shown(url)} answered more than ${p.maxBytes} bytes`)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (err instanceof FetchFailed) throw err
    throw new FetchFailed('unreachable', (err as Error).message)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new FetchFailed('invalid', `${shown(url)} did not answer JSON`)
  }
  return { status: res.statusCode, headers: res.headers, body }
}
