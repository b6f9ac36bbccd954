// The admin API-key schemas (lib/schemas/api-keys.ts), in process: strict bodies, no coercion,
// messages that name the field. The same rules over HTTP: test/blackbox/admin-input.test.ts.
import t from 'tap'
import { ApiKeyRecordSchema, createApiKeyBody, describeIssues, KEY_NAME_RE } from '../../../lib/schemas/api-keys.js'

const services = ['users', 'orders']
const Body = createApiKeyBody(() => services)

t.test('a create body takes the documented fields and nothing else', async (t) => {
  t.ok(Body.safeParse({ name: 'a' }).success, 'a name alone')
  const full = { name: 'ci key', rate_limit: 60, burst: 10, services: ['users'], expires_at: new Date(Date.now() + 3_600_000).toISOString() }
  t.same(Body.parse(full), full, 'every field')
  t.ok(Body.safeParse({ name: 'a', rate_limit: null, burst: null, services: null, expires_at: null }).success, 'null means the default')
  t.notOk(Body.safeParse({ name: 'a', bogus: 1 }).success, 'an unknown field is refused')
  t.notOk(Body.safeParse({}).success, 'the name is required')
})

t.test('a create body is never coerced', async (t) => {
  for (const body of [{ name: 'a', rate_limit: '60' }, { name: 'a', rate_limit: 1.5 }, { name: 'a', rate_limit: 0 }, { name: 'a', burst: 1_000_001 }, { name: 1 }]) {
    t.notOk(Body.safeParse(body).success, JSON.stringify(body))
  }
})

t.test('services must be known, distinct and at least one', async (t) => {
  t.notOk(Body.safeParse({ name: 'a', services: ['nope'] }).success, 'an unknown service')
  t.notOk(Body.safeParse({ name: 'a', services: ['users', 'users'] }).success, 'a repeat')
  t.notOk(Body.safeParse({ name: 'a', services: [] }).success, 'an empty list')
  services.push('late')
  t.ok(Body.safeParse({ name: 'a', services: ['late'] }).success, 'the list of services is read at each validation')
  services.pop()
})

t.test('expires_at is an ISO-8601 date-time with a zone, in the future', async (t) => {
  t.notOk(Body.safeParse({ name: 'a', expires_at: '2999-01-01T00:00:00' }).success, 'no zone')
  t.notOk(Body.safeParse({ name: 'a', expires_at: '2000-01-01T00:00:00Z' }).success, 'in the past')
  t.ok(Body.safeParse({ name: 'a', expires_at: '2999-01-01T00:00:00+02:00' }).success, 'an offset')
})

t.test('key names are printable ASCII: no control, RTL or lookalike characters', async (t) => {
  for (const name of ['a', 'ci-key_1.0', 'two words', 'A'.repeat(64)]) t.ok(KEY_NAME_RE.test(name), name)
  for (const name of ['', ' a', 'a ', '-a', 'a\nb', 'a\u202eb', 'аdmin', 'a/b', 'A'.repeat(65)]) t.notOk(KEY_NAME_RE.test(name), JSON.stringify(name))
})

t.test('a record on output keeps only the record fields', async (t) => {
  const record = { id: 'k', name: 'a', rate_limit: null, burst: null, services: null, active: true, created_at: 'c', expires_at: null, last_used_at: null, quota: null }
  t.same(ApiKeyRecordSchema.parse({ ...record, hash: 'secret', raw_key: 'gw_x' }), record, 'the hash and raw key are stripped')
})

t.test('describeIssues names every field, at most five', async (t) => {
  const issues = Body.safeParse({ name: '', rate_limit: 'x', burst: 0, bogus: 1 }).error?.issues ?? []
  const text = describeIssues(issues, 'body')
  t.match(text, /name: /)
  t.match(text, /rate_limit: /)
  t.match(text, /burst: /)
  t.match(text, /body: /, 'an issue of the object itself is named after the root')
  const many = Array.from({ length: 8 }, (_, i) => ({ path: [`f${i}`], message: 'bad' }))
  t.equal(describeIssues(many, 'body').split('; ').length, 5)
})
