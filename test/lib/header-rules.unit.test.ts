// Header transform validation and compilation (docs/policies.md#header-transforms), without sockets.
import t from 'tap'
import { compileHeaderRule, headerRuleProblems, protectedHeader } from '../../lib/header-rules.js'

t.test('the gateway\'s own names are protected in any case; others are not', async (t) => {
  for (const name of ['Host', 'CONNECTION', 'x-forwarded-for', 'X-Forwarded-Anything', 'x-consumer-id', 'X-Request-Id', 'traceparent',
    'X-RateLimit-Limit', 'RateLimit', 'ratelimit-policy', 'Retry-After', 'X-Quota-Reset', 'Content-Length', 'Transfer-Encoding', 'Forwarded']) {
    t.not(protectedHeader(name), null, name)
  }
  for (const name of ['X-Tenant', 'Cookie', 'Authorization', 'Server', 'Cache-Control', 'X-Forwarded', 'X-Consumer']) {
    t.equal(protectedHeader(name), null, name)
  }
})

t.test('problems name the path and the header', async (t) => {
  t.same(headerRuleProblems({ set: { 'X-Tenant': 'acme' }, remove: ['Server'] }), [])
  t.same(headerRuleProblems({ set: { Host: 'x' } }).map((p) => p.path), [['set', 'Host']])
  t.same(headerRuleProblems({ remove: ['ok', 'X-Request-Id'] }).map((p) => p.path), [['remove', 1]])
  t.match(headerRuleProblems({ set: { 'x-a': 'x' }, remove: ['X-A'] })[0].message, /"X-A" is already named \(as "x-a"\)/)
  t.match(headerRuleProblems({ set: { 'x-a': 'a\nb' } })[0].message, /no CR, LF or NUL/)
  t.match(headerRuleProblems({ set: { 'x-a': 'é' } })[0].message, /visible ASCII/)
  t.match(headerRuleProblems({ set: { 'x-a': 'x'.repeat(4097) } })[0].message, /at most 4096/)
  t.match(headerRuleProblems({ remove: [''] })[0].message, /not a valid HTTP token/)
})

t.test('compiled: lowercase names, set names also skipped from what arrived; nothing to do is null', async (t) => {
  t.equal(compileHeaderRule(undefined), null)
  t.equal(compileHeaderRule({}), null)
  t.equal(compileHeaderRule({ set: {}, remove: [] }), null)
  const c = compileHeaderRule({ set: { 'X-Tenant': 'acme' }, remove: ['Server'] })
  t.same(c?.set, [['x-tenant', 'acme']])
  t.same([...(c?.skip ?? [])].sort(), ['server', 'x-tenant'])
})
