// One rule for gateway credentials (lib/credentials.ts), in process. Through a gateway:
// test/lib/credentials.test.ts.
import t from 'tap'
import { bearerToken, findCredential, isGatewayBearer } from '../../lib/credentials.js'

t.test('Bearer is case-insensitive and takes SP or HTAB', async (t) => {
  t.equal(bearerToken('Bearer abc'), 'abc')
  t.equal(bearerToken('bEaReR\tabc'), 'abc')
  t.equal(bearerToken('Bearer   abc  '), 'abc')
  t.equal(bearerToken('Bearerabc'), null)
  t.equal(bearerToken('Basic abc'), null)
  t.equal(bearerToken('Bearer '), null)
  t.ok(isGatewayBearer('bearer\tgw_x'))
  t.notOk(isGatewayBearer('Bearer eyJ.x'))
  t.same(findCredential({}, []), { kind: 'none' })
  t.same(findCredential({ 'x-api-key': 'gw_a' }, ['X-Api-Key', 'gw_a', 'authorization', 'Bearer gw_a']), { kind: 'key', raw: 'gw_a' })
  t.same(findCredential({ 'x-api-key': 'gw_a' }, ['X-Api-Key', 'gw_a', 'Authorization', 'Bearer gw_b']), { kind: 'ambiguous' })
  t.same(findCredential({ authorization: 'Bearer gw_a' }, ['Authorization', 'Bearer gw_a', 'Authorization', 'Bearer gw_b']), { kind: 'ambiguous' })
  t.same(findCredential({ 'x-api-key': 'gw_a, gw_b' }, ['x-api-key', 'gw_a', 'x-api-key', 'gw_b']), { kind: 'ambiguous' })
  t.same(findCredential({ authorization: 'Bearer other' }, ['Authorization', 'Bearer other']), { kind: 'none' })
})
