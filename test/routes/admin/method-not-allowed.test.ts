// Wrong methods and trailing slashes inside /admin (routes/admin/method-not-allowed.ts): 405 with
// Allow for a path that exists, 404 for one that does not, and a trailing slash is 404 on every
// admin path (never a validation 400, never the collection).
import t from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { routePattern } from '../../../routes/admin/method-not-allowed.js'
import { build } from '../../support/app.js'

const AUTH = 'Basic ' + Buffer.from('admin:test-password').toString('base64')
const admin = (app: FastifyInstance, opts: InjectOptions) => app.inject({ ...opts, headers: { authorization: AUTH, ...opts.headers } })

t.test('a wrong method on an admin path answers 405 with Allow, in the JSON envelope', async (t) => {
  const app = await build(t)
  const cases: Array<[InjectOptions['method'], string, string]> = [
    ['PUT', '/admin/apikeys/abc', 'DELETE, GET, HEAD'],
    ['PATCH', '/admin/apikeys/abc', 'DELETE, GET, HEAD'],
    ['DELETE', '/admin/apikeys', 'GET, HEAD, POST'],
    ['PUT', '/admin/apikeys', 'GET, HEAD, POST'],
    ['GET', '/admin/apikeys/abc/revoke', 'POST'],
    ['DELETE', '/admin/circuit-breakers', 'GET, HEAD'],
    ['GET', '/admin/circuit-breakers/reset', 'POST'],
    ['GET', '/admin/circuit-breakers/user-service/reset', 'POST'],
    ['POST', '/admin/openapi.json?x=1', 'GET, HEAD']
  ]
  for (const [method, url, allow] of cases) {
    const res = await admin(app, { method, url })
    t.equal(res.statusCode, 405, `${method} ${url}`)
    t.equal(res.headers.allow, allow, `${method} ${url}: Allow`)
    t.match(res.json(), { status: 'error', error: 'Method Not Allowed', message: new RegExp(allow) })
    t.equal(res.headers['cache-control'], 'no-store')
  }
})

t.test('a wrong method with a body is refused before the body is parsed', async (t) => {
  const app = await build(t)
  const res = await admin(app, { method: 'PUT', url: '/admin/apikeys/abc', headers: { 'content-type': 'application/x-anything' }, payload: 'x'.repeat(100) })
  t.equal(res.statusCode, 405)
})

t.test('an admin path that does not exist is 404, whatever the method', async (t) => {
  const app = await build(t)
  for (const [method, url] of [['GET', '/admin/nothing'], ['POST', '/admin/apikeys/abc/rename'], ['DELETE', '/admin/x/y/z']] as const) {
    const res = await admin(app, { method, url })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.equal(res.headers.allow, undefined)
    t.match(res.json(), { status: 'error', error: 'Not Found' })
  }
})

t.test('a trailing slash or an empty segment is 404 on every admin collection and item', async (t) => {
  const app = await build(t)
  const id = (await admin(app, { method: 'POST', url: '/admin/apikeys', payload: { name: 'k' } })).json().data.api_key.id as string
  const urls = ['/admin/apikeys/', '/admin/apikeys/?limit=1', `/admin/apikeys/${id}/`, '/admin/circuit-breakers/',
    '/admin/openapi.json/', '/admin/', '/admin//apikeys', '/admin/circuit-breakers//reset']
  for (const url of urls) {
    for (const method of ['GET', 'POST', 'DELETE'] as const) {
      const res = await admin(app, { method, url })
      t.equal(res.statusCode, 404, `${method} ${url}`)
      t.match(res.json(), { status: 'error', error: 'Not Found', message: /trailing slash/ })
    }
  }
  t.equal((await admin(app, { url: `/admin/apikeys/${id}` })).statusCode, 200, 'the exact path still works')
})

t.test('without credentials a wrong method is 401 like any admin request: nothing about the paths leaks', async (t) => {
  const app = await build(t)
  for (const url of ['/admin/apikeys/abc', '/admin/nothing', '/admin/apikeys/']) {
    const res = await app.inject({ method: 'PUT', url })
    t.equal(res.statusCode, 401, url)
    t.equal(res.headers.allow, undefined)
  }
})

t.test('routePattern matches one segment per parameter', async (t) => {
  const p = routePattern('/admin/apikeys/:id/revoke')
  t.ok(p.test('/admin/apikeys/abc/revoke'))
  t.notOk(p.test('/admin/apikeys/a/b/revoke'))
  t.notOk(p.test('/admin/apikeys//revoke'))
  t.ok(routePattern('/admin/openapi.json').test('/admin/openapi.json'))
  t.notOk(routePattern('/admin/openapi.json').test('/admin/openapiXjson'))
})

t.test('a parameter too long for the router is 404, not 405 for a method the path has', async (t) => {
  const app = await build(t)
  const res = await admin(app, { url: `/admin/apikeys/${'x'.repeat(300)}` })
  t.equal(res.statusCode, 404)
  t.equal(res.headers.allow, undefined)
})
