// CIDR parsing and the compiled allow/deny check (docs/policies.md#ip-rules), without sockets.
import t from 'tap'
import { compileIpRules, parseCidr } from '../../lib/ip-rules.js'

t.test('parseCidr takes addresses and CIDRs of both families, prefixes in range only', async (t) => {
  t.same(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' })
  t.same(parseCidr('10.1.2.3'), { address: '10.1.2.3', prefix: 32, family: 'ipv4' })
  t.same(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' })
  t.same(parseCidr('2001:db8::/32'), { address: '2001:db8::', prefix: 32, family: 'ipv6' })
  t.same(parseCidr('0.0.0.0/0'), { address: '0.0.0.0', prefix: 0, family: 'ipv4' })
  for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/-1', '10.0.0.0/ 8', 'example.com', '', '10.0.0.256', '1.2.3.4/0x10']) {
    t.equal(parseCidr(bad), null, JSON.stringify(bad))
  }
})

t.test('no rules: no check at all', async (t) => {
  t.equal(compileIpRules(undefined, undefined), null)
  t.equal(compileIpRules([], []), null)
})

t.test('deny wins over allow; an allow list refuses the unlisted', async (t) => {
  const ok = compileIpRules(['10.0.0.0/8', '2001:db8::/32'], ['10.6.0.0/16', '2001:db8:bad::/48']) as (ip: string) => boolean
  t.ok(ok('10.1.2.3'))
  t.notOk(ok('10.6.1.1'), 'denied inside the allowed range')
  t.notOk(ok('192.168.1.1'), 'not allowed')
  t.ok(ok('2001:db8:1::1'))
  t.notOk(ok('2001:db8:bad::1'))
  t.notOk(ok('::1'))
})

t.test('an IPv4 client seen on a dual-stack socket is matched as IPv4', async (t) => {
  const ok = compileIpRules(['10.0.0.0/8'], undefined) as (ip: string) => boolean
  t.ok(ok('::ffff:10.1.2.3'))
  t.notOk(ok('::ffff:11.1.2.3'))
  const deny = compileIpRules(undefined, ['127.0.0.1']) as (ip: string) => boolean
  t.notOk(deny('::ffff:127.0.0.1'))
  t.ok(deny('::1'))
})

t.test('something that is not an address is refused whenever rules exist', async (t) => {
  const deny = compileIpRules(undefined, ['10.0.0.0/8']) as (ip: string) => boolean
  t.notOk(deny(''))
  t.notOk(deny('unknown'))
})
