// The demo's local token issuer (docs/jwt.md#the-demo): an ES256 key made at start, OpenID Connect
// discovery and a JWKS as a real identity provider serves them, and `GET /token?sub=<name>` that
// mints a 15-minute token for anyone who asks. For the demo only: a real IdP authenticates the
// caller before it signs anything.
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { exportJWK, SignJWT } from 'jose'

const port = Number(process.env.PORT ?? 8090)
const issuer = `http://127.0.0.1:${port}`
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const kid = `demo-${randomBytes(4).toString('hex')}`
const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] }

createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', issuer)
  if (url.pathname === '/.well-known/openid-configuration') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token`, id_token_signing_alg_values_supported: ['ES256'] }))
  } else if (url.pathname === '/jwks') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=300' })
    res.end(JSON.stringify(jwks))
  } else if (url.pathname === '/token') {
    const sub = (url.searchParams.get('sub') ?? 'demo-user').slice(0, 64)
    const scope = url.searchParams.get('scope') ?? undefined
    const token = await new SignJWT({ scope })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
      .setIssuer(issuer).setSubject(sub).setIssuedAt().setExpirationTime('15m')
      .sign(privateKey)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(token)
  } else {
    res.writeHead(404).end()
  }
}).listen(port, '127.0.0.1', () => console.log(`demo issuer ${issuer}`))
