// The admin API's request bodies beyond plain JSON: PATCH /admin/services/{name} takes
// `application/merge-patch+json` (it is a JSON merge patch, RFC 7396), and an action POST (revoke a
// key, reset breakers) sent with `Content-Type: application/json` and no body is accepted, as many
// HTTP clients send it. Routes that need a body still refuse an empty one.
import t from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build } from '../../support/app.js'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')
const call = async (app: FastifyInstance, opts: InjectOptions) =>
  await app.inject({ ...opts, headers: { authorization: AUTH, ...opts.headers } })
const MERGE_PATCH = { 'content-type': 'application/merge-patch+json' }
const JSON_TYPE = { 'content-type': 'application/json' }

t.test('PATCH /admin/services/{name} takes application/merge-patch+json: absent keeps, null removes', async (t) => {
  const app = await build(t)
  const res = await call(app, { method: 'PATCH', url: '/admin/services/user-service', headers: MERGE_PATCH, payload: JSON.stringify({ stripPrefix: true, timeoutMs: 5000 }) })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json().data.diff, { stripPrefix: { from: false, to: true }, timeoutMs: { from: null, to: 5000 } })
  const removed = await call(app, { method: 'PATCH', url: '/admin/services/user-service', headers: { 'content-type': 'application/merge-patch+json; charset=utf-8' }, payload: '{"timeoutMs":null}' })
  t.equal(removed.statusCode, 200, removed.body)
  t.equal(app.services.get('user-service')?.definition.timeoutMs, undefined)
  t.equal(app.services.get('user-service')?.definition.stripPrefix, true)

  const bad = await call(app, { method: 'PATCH', url: '/admin/services/user-service', headers: MERGE_PATCH, payload: '{"stripPrefix":' })
  t.equal(bad.statusCode, 400, 'malformed JSON is still 400')
  const put = await call(app, { method: 'PUT', url: '/admin/services/other', headers: MERGE_PATCH, payload: JSON.stringify({ prefix: '/other', backends: [{ url: 'http://127.0.0.1:9' }] }) })
  t.equal(put.statusCode, 415, 'PUT is a replacement, not a merge patch: 415')
  t.equal(put.json().status, 'error')
})

t.test('action POSTs accept Content-Type: application/json with no body; routes that need a body still refuse it', async (t) => {
  const app = await build(t)
  const key = (await call(app, { method: 'POST', url: '/admin/apikeys', payload: { name: 'to-revoke' } })).json().data.api_key.id as string
  for (const url of [`/admin/apikeys/${key}/revoke`, '/admin/circuit-breakers/reset', '/admin/circuit-breakers/user-service/reset']) {
    const res = await call(app, { method: 'POST', url, headers: { ...JSON_TYPE, 'content-length': '0' } })
    t.equal(res.statusCode, 200, `POST ${url}: ${res.body}`)
  }
  t.equal((await call(app, { url: `/admin/apikeys/${key}` })).json().data.active, false, 'the key was revoked')

  const create = await call(app, { method: 'POST', url: '/admin/apikeys', headers: { ...JSON_TYPE, 'content-length': '0' } })
  t.equal(create.statusCode, 400, 'creating a key needs a body')
  t.match(create.json().message, /body/)
  const patch = await call(app, { method: 'PATCH', url: '/admin/services/user-service', headers: { ...JSON_TYPE, 'content-length': '0' } })
  t.equal(patch.statusCode, 400, 'a PATCH needs a body')
  const revokeBad = await call(app, { method: 'POST', url: `/admin/apikeys/${key}/revoke`, headers: JSON_TYPE, payload: '{"x":' })
  t.equal(revokeBad.statusCode, 400, 'a malformed body is still 400')
})
