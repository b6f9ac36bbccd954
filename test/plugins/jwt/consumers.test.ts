// A JWT consumer beyond plain requests (docs/jwt.md): its bucket shared by two gateway instances
// on one Redis, and a WebSocket upgrade authenticated by a token.
import t from 'tap'
import WebSocket from 'ws'
import { http } from '../../support/http.js'
import { uniquePrefix, REDIS_URL } from '../../support/app.js'
import { api, backend, bearer, gateway, idp, keysLoaded } from '../../support/jwt.js'
import { startWsBackend } from '../../support/ws-backend.js'
import { dial } from '../../support/ws-client.js'

t.test('two instances on one Redis share a JWT consumer\'s bucket', async (t) => {
  const i = await idp(t, ['ES256'])
  const b = await backend(t)
  const env = { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl, STORAGE: 'redis', REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix(), RATE_LIMIT_BURST: '4', RATE_LIMIT_RPM: '1' }
  const one = await gateway(t, env, [api(b.url)])
  const two = await gateway(t, env, [api(b.url)])
  await keysLoaded(one.app)
  await keysLoaded(two.app)
  const carol = await i.sign({ claims: { sub: 'carol' } })
  const statuses: number[] = []
  for (let n = 0; n < 8; n++) statuses.push((await http(n % 2 === 0 ? one.port : two.port, '/api/x', { headers: bearer(carol) })).status)
  t.equal(statuses.filter((s) => s === 200).length, 4, 'both instances together admit one bucket of 4')
  t.equal(statuses.filter((s) => s === 429).length, 4, 'the rest get 429')
  const last = await http(two.port, '/api/x', { headers: bearer(carol) })
  t.equal(last.status, 429)
  t.ok(Number(last.headers['retry-after']) >= 1, 'with Retry-After')
  const dave = await i.sign({ claims: { sub: 'dave' } })
  t.equal((await http(one.port, '/api/x', { headers: bearer(dave) })).status, 200, 'another subject has its own bucket')
  const other = await i.sign({ claims: { sub: 'carol', iss: 'https://not-accepted.example' } })
  t.equal((await http(one.port, '/api/x', { headers: bearer(other) })).status, 401, 'the same sub from another issuer is not carol')
})

t.test('a WebSocket upgrade is authenticated by a JWT like any request', async (t) => {
  const i = await idp(t, ['EdDSA'])
  const ws = await startWsBackend()
  t.teardown(() => ws.close())
  const { app, port } = await gateway(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl, JWT_FORWARD_TOKEN: 'false' }, [
    { name: 'chat', prefix: '/chat', backends: [{ url: ws.url }], websocket: true, authMethods: ['jwt'], auth: 'required', scopes: ['chat'] }
  ])
  await keysLoaded(app)
  const base = `ws://127.0.0.1:${port}`
  const token = await i.sign({ claims: { sub: 'erin', scope: 'chat' } })
  const client: WebSocket = await dial(`${base}/chat/room`, { headers: bearer(token), teardown: t })
  client.send('hi')
  const echoed = await new Promise<string>((resolve) => client.once('message', (d: Buffer) => resolve(d.toString())))
  t.equal(echoed, 'hi', 'the tunnel works')
  const seen = ws.handshakes[0]
  t.equal(seen.headers['x-consumer-id'], 'erin', 'the backend learns the subject')
  t.equal(seen.headers.authorization, undefined, 'JWT_FORWARD_TOKEN=false: no token in the upgrade request')
  client.close()

  const bad = await dial(`${base}/chat/room`, { headers: bearer(await i.sign({ claims: { exp: Math.floor(Date.now() / 1000) - 3600 } })) }).catch((e: { status: number, headers: Record<string, string> }) => e)
  t.equal((bad as { status: number }).status, 401, 'an expired token: refused before the 101')
  t.match((bad as { headers: Record<string, string> }).headers['www-authenticate'], /error="invalid_token"/)
  const noScope = await dial(`${base}/chat/room`, { headers: bearer(await i.sign({ claims: { sub: 'frank' } })) }).catch((e: { status: number }) => e)
  t.equal((noScope as { status: number }).status, 403, 'a token without the scope: 403')
  const none = await dial(`${base}/chat/room`).catch((e: { status: number }) => e)
  t.equal((none as { status: number }).status, 401, 'no token: 401')
  t.equal(ws.handshakes.length, 1, 'no refused upgrade reached the backend')
})
