// The request target's pure functions (plugins/proxy/paths.ts), in process. The black-box cases
// (BI-14, BI-15) send the same kinds of paths through a gateway: test/blackbox/paths.test.ts.
import t from 'tap'
import { isSafePath, normalizePath, stripPrefix, withoutKeyParams } from '../../../plugins/proxy/paths.js'
import { generateApiKey } from '../../../lib/api-key-format.js'

t.test('normalizePath decodes escaped unreserved characters and upper-cases every other escape', async (t) => {
  t.equal(normalizePath('/api/users/1'), '/api/users/1', 'no escape: unchanged')
  t.equal(normalizePath('/api/%75sers'), '/api/users', '%75 is u')
  t.equal(normalizePath('/%61pi/%65cho/x'), '/api/echo/x')
  t.equal(normalizePath('/a%2D%2e%5f%7E'), '/a-._~', 'the four unreserved marks')
  t.equal(normalizePath('/a%2fb'), '/a%2Fb', 'an encoded slash stays encoded, upper-cased')
  t.equal(normalizePath('/a%20b%3a'), '/a%20b%3A', 'reserved and other escapes stay as escapes')
  t.equal(normalizePath('/a%5cb'), '/a%5Cb', 'an encoded backslash is upper-cased for isSafePath')
  t.equal(normalizePath('/a%zz%4'), '/a%zz%4', 'a malformed escape is left alone')
  t.equal(normalizePath('/%252e'), '/%252e', 'decoded once only: %25 stays')
})

t.test('isSafePath refuses dot segments, as sent or once decoded, and backslashes', async (t) => {
  for (const path of ['/api/echo/x', '/api/echo/..hidden', '/api/echo/a../b', '/api/echo/.well-known/x', '/api/echo/a.b.c', '/api/echo/%2e%2ex', '/']) {
    t.ok(isSafePath(path), `${path} is safe`)
  }
  for (const path of ['/api/echo/../admin', '/api/echo/./x', '/api/echo/..', '/..', '/api/echo/..%2Fadmin', '/api/echo/%2e%2e/admin',
    '/api/echo/.%2E/x', '/api/echo/a\\b', '/api/echo/a%5Cb', '/api/echo/%E0%A4%A/..%2F']) {
    t.notOk(isSafePath(normalizePath(path)), `${path} is refused`)
  }
  t.notOk(isSafePath('/api/echo/%E0%A4%A.'), 'a dot next to an escape that does not decode is refused')
  t.ok(isSafePath('/api/echo/%E0%A4%A'), 'an undecodable escape without dots is left to the backend')
  t.ok(isSafePath('/api/echo/%252e%252e/admin'), 'double-encoded dots are names after one decoding')
})

t.test('stripPrefix leaves the rest of the path, or /', async (t) => {
  t.equal(stripPrefix('/api/users/1', '/api/users'), '/1')
  t.equal(stripPrefix('/api/users', '/api/users'), '/', 'nothing left is /')
  t.equal(stripPrefix('/api/users/', '/api/users'), '/')
  t.equal(stripPrefix('/anything/x', '/'), '/anything/x', 'the root prefix strips nothing')
})

t.test('withoutKeyParams removes every part that holds a gateway key, in any encoding', async (t) => {
  const key = generateApiKey().raw
  const other = generateApiKey().raw
  const pct = (text: string): string => [...text].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('')
  t.equal(withoutKeyParams(''), '')
  t.equal(withoutKeyParams('a=1&b=2'), 'a=1&b=2', 'no key: unchanged')
  t.equal(withoutKeyParams(`apikey=${key}&x=1`), 'x=1')
  t.equal(withoutKeyParams(`x=1&token=${key}&y=2&k=${other}`), 'x=1&y=2', 'every key-valued parameter, whatever its name')
  t.equal(withoutKeyParams(`k=gw%5F${key.slice(3)}&x=1`), 'x=1', '%5F is _')
  t.equal(withoutKeyParams(`k=${pct(key)}&x=1`), 'x=1', 'every character escaped')
  t.equal(withoutKeyParams(`k=${pct(pct(key))}&x=1`), 'x=1', 'escaped twice')
  t.equal(withoutKeyParams(`k=gw%5f${key.slice(3)}%zz&x=1`), 'x=1', 'a malformed escape elsewhere in the value')
  t.equal(withoutKeyParams(`k=${key}`), '', 'nothing left is empty')
  t.equal(withoutKeyParams(`${key}&a=1`), 'a=1', 'a bare key')
  t.equal(withoutKeyParams(`${key}=&a=1`), 'a=1', 'a key as the name')
  t.equal(withoutKeyParams(`x=Bearer%20${key}&a=1`), 'a=1', 'a key inside a longer value')
  t.equal(withoutKeyParams('gw_name=1&k=gw_short&k2=xgw_'), 'gw_name=1&k=gw_short&k2=xgw_', 'shorter than a key: not a key')
  t.equal(withoutKeyParams(`flag&k=${key}`), 'flag', 'a parameter without = is kept')
  t.equal(withoutKeyParams('a=1&&b=2'), 'a=1&&b=2', 'empty parts are kept as sent when nothing is removed')
})
