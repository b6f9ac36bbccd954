// .env.example documents every variable the config schema knows, with its default, and nothing else.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { KNOWN_VARIABLES, loadConfig } from '../../lib/config.js'

const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
const entries = new Map(text.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => {
  const i = l.indexOf('=')
  return [l.slice(0, i), l.slice(i + 1)] as const
}))

t.test('.env.example lists exactly the variables the gateway reads', async (t) => {
  t.same([...entries.keys()].sort(), [...KNOWN_VARIABLES].sort())
})

t.test('every variable in .env.example has a comment line above it', async (t) => {
  const lines = text.split('\n')
  lines.forEach((l, i) => {
    if (/^[A-Z_]+=/.test(l)) t.match(lines[i - 1], /^# /, `${l.split('=')[0]} is explained`)
  })
})

t.test('.env.example loads as a valid configuration once a password is set', async (t) => {
  const env = Object.fromEntries(entries)
  env.ADMIN_PASSWORD = 'x'
  const c = loadConfig(env, { dotenv: false })
  t.equal(c.port, 8081)
  t.equal(c.storage, 'embedded')
})
