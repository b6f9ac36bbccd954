// authMethods and scopes through the admin API (docs/jwt.md): validated like the routes file,
// in the OpenAPI document, applied at once to proxied requests.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { listen } from '../../support/app.js'
import { http } from '../../support/http.js'
import { backend, bearer, idp, keysLoaded } from '../../support/jwt.js'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')
const admin = async (app: FastifyInstance, method: 'PUT' | 'PATCH', url: string, payload: object) =>
  await app.inject({ method, url, headers: { authorization: AUTH }, payload })

t.test('a service written through the admin API takes authMethods and scopes, validated', async (t) => {
  const i = await idp(t)
  const b = await backend(t)
  const { app, url } = await listen(t, { JWT_ISSUER: i.issuer, JWT_JWKS_URL: i.jwksUrl, RATE_LIMIT_BURST: '1000' })
  const port = Number(new URL(url).port)
  await keysLoaded(app)
  const created = await admin(app, 'PUT', '/admin/services/orders', { prefix: '/orders', backends: [{ url: b.url }], authMethods: ['jwt'], scopes: ['orders:read'] })
  t.equal(created.statusCode, 201)
  t.match(created.json().data.service, { authMethods: ['jwt'], scopes: ['orders:read'] })
  t.equal((await http(port, '/orders/1', { headers: bearer(await i.sign({ claims: { scope: 'orders:read' } })) })).status, 200, 'applied at once')
  t.equal((await http(port, '/orders/1', { headers: bearer(await i.sign()) })).status, 403, 'the scope is required')
  const patched = await admin(app, 'PATCH', '/admin/services/orders', { scopes: null })
  t.equal(patched.statusCode, 200)
  t.equal((await http(port, '/orders/1', { headers: bearer(await i.sign()) })).status, 200, 'scopes removed by a merge patch')

  for (const [bad, field] of [[{ authMethods: ['basic'] }, 'authMethods'], [{ authMethods: [] }, 'authMethods'], [{ scopes: ['a b'] }, 'scopes']] as const) {
    const res = await admin(app, 'PUT', '/admin/services/bad', { prefix: '/bad', backends: [{ url: b.url }], ...bad })
    t.equal(res.statusCode, 400, `${JSON.stringify(bad)}: 400`)
    t.match(res.json().message, field)
  }
  const doc = (await app.inject({ url: '/admin/openapi.json', headers: { authorization: AUTH } })).json()
  const text = JSON.stringify(doc)
  t.ok(text.includes('"authMethods"') && text.includes('"scopes"'), 'both fields are in the OpenAPI document')
})

t.test('without an issuer, a JWT-only service is refused by the admin API', async (t) => {
  const b = await backend(t)
  const { app } = await listen(t)
  const res = await admin(app, 'PUT', '/admin/services/orders', { prefix: '/orders', backends: [{ url: b.url }], authMethods: ['jwt'] })
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /authMethods: service accepts only "jwt" but no issuer is configured/)
  t.equal((await admin(app, 'PUT', '/admin/services/orders', { prefix: '/orders', backends: [{ url: b.url }], authMethods: ['apikey'] })).statusCode, 201)
})
