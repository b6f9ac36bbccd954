// A real local identity provider for the JWT tests: an HTTP server on port 0 serving OpenID
// Connect discovery and a JWKS, with keys made by node:crypto and tokens signed by jose's SignJWT
// (RS256, ES256, EdDSA). It can rotate keys, go down (connections reset) and come back, and counts
// every fetch, so tests observe exactly what the gateway asked for.
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, SignJWT, type JWK, type JWTPayload } from 'jose'

export type Alg = 'RS256' | 'ES256' | 'EdDSA'

export interface IdpKey {
  kid: string
  alg: Alg
  privateKey: KeyObject
  jwk: JWK
}

export interface SignOptions {
  kid?: string
  /** The header's alg (default the key's): a lie here makes a token the gateway must refuse. */
  alg?: string
  /** Key to sign with (default the first published key). */
  key?: IdpKey
  /** Claims merged over the defaults (iss, sub, aud, iat, exp = now + 300 s); undefined removes one. */
  claims?: Record<string, unknown>
}

export interface Idp {
  /** The issuer identifier: `http://127.0.0.1:<port>` (discovery is served under it). */
  issuer: string
  jwksUrl: string
  port: number
  /** Requests for the JWKS and for the discovery document so far. */
  readonly jwksHits: number
  readonly discoveryHits: number
  /** Every key made so far, by kid; `published` lists the kids the JWKS serves. */
  keys: Map<string, IdpKey>
  published: string[]
  /** Makes a key (not published unless `publish`). */
  addKey (alg: Alg, publish?: boolean): Promise<IdpKey>
  /** Up: serve; down: reset every connection (an IdP outage). */
  setDown (down: boolean): void
  /** Cache-Control of the JWKS answers (default none). */
  cacheControl: string | null
  sign (opts?: SignOptions): Promise<string>
  close (): Promise<void>
}

async function makeKey (alg: Alg): Promise<IdpKey> {
  const { privateKey, publicKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('ed25519')
  const kid = `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return { kid, alg, privateKey, jwk }
}

/** Starts an IdP with one published key of each `algs` (default one RS256 key). */
export async function startIdp (algs: Alg[] = ['RS256'], options: { audience?: string } = {}): Promise<Idp> {
  let down = false
  let jwksHits = 0
  let discoveryHits = 0
  const keys = new Map<string, IdpKey>()
  const server: Server = createServer((req, res) => {
    if (down) {
      req.socket.destroy()
      return
    }
    if (req.url === '/.well-known/openid-configuration') {
      discoveryHits++
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ issuer: idp.issuer, jwks_uri: idp.jwksUrl, id_token_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA'] }))
      return
    }
    if (req.url === '/jwks') {
      jwksHits++
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (idp.cacheControl !== null) headers['cache-control'] = idp.cacheControl
      res.writeHead(200, headers)
      res.end(JSON.stringify({ keys: idp.published.map((kid) => keys.get(kid)?.jwk) }))
      return
    }
    res.writeHead(404).end()
  })
  server.keepAliveTimeout = 500
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const idp: Idp = {
    issuer: `http://127.0.0.1:${port}`,
    jwksUrl: `http://127.0.0.1:${port}/jwks`,
    port,
    get jwksHits () { return jwksHits },
    get discoveryHits () { return discoveryHits },
    keys,
    published: [],
    cacheControl: null,
    async addKey (alg, publish = true) {
      const key = await makeKey(alg)
      keys.set(key.kid, key)
      if (publish) idp.published.push(key.kid)
      return key
    },
    setDown (d) {
      down = d
      if (d) server.closeAllConnections()
    },
    async sign (opts = {}) {
      const key = opts.key ?? keys.get(idp.published[0]) as IdpKey
      const now = Math.floor(Date.now() / 1000)
      const claims: Record<string, unknown> = { iss: idp.issuer, sub: 'user-1', iat: now, exp: now + 300, ...(options.audience === undefined ? {} : { aud: options.audience }), ...opts.claims }
      for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k]
      return await new SignJWT(claims as JWTPayload)
        .setProtectedHeader({ alg: opts.alg ?? key.alg, kid: opts.kid ?? key.kid, typ: 'JWT' })
        .sign(key.privateKey)
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
  for (const alg of algs) await idp.addKey(alg)
  return idp
}

/** A token with any header and payload and a junk signature (for alg none / HS256 / malformed cases). */
export function forge (header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${b64(header)}.${b64(payload)}.${signature}`
}
