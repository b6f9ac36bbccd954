// The routes-file fields of WebSocket tunnels (docs/proxying.md#websockets): defaults, values, and refusals.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../../lib/config.js'
import { tempDir } from '../support/basics.js'

function servicesFrom (t: Parameters<typeof tempDir>[0], entries: unknown[]) {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'routes.json'), JSON.stringify({ services: entries }))
  return loadConfig({ ADMIN_PASSWORD: 'pw', ROUTES_FILE: join(dir, 'routes.json') }, { dotenv: false }).services
}

const entry = (extra: Record<string, unknown> = {}) => ({ name: 'chat', prefix: '/chat', backends: [{ url: 'http://127.0.0.1:9000' }], ...extra })

t.test('a service is not a WebSocket service unless it says so; limits default to 1 MiB and 60 s', async (t) => {
  const [s] = servicesFrom(t, [entry()])
  t.same([s.websocket, s.wsMaxMessageBytes, s.wsIdleTimeoutMs], [false, 1024 * 1024, 60000])
  const builtIn = loadConfig({ ADMIN_PASSWORD: 'pw' }, { dotenv: false }).services
  t.ok(builtIn.every((b) => !b.websocket && b.wsMaxMessageBytes === 1024 * 1024 && b.wsIdleTimeoutMs === 60000), 'the built-in services too')
})

t.test('websocket, wsMaxMessageBytes and wsIdleTimeoutMs are read from the routes file', async (t) => {
  const [s] = servicesFrom(t, [entry({ websocket: true, wsMaxMessageBytes: 4096, wsIdleTimeoutMs: 15000 })])
  t.same([s.websocket, s.wsMaxMessageBytes, s.wsIdleTimeoutMs], [true, 4096, 15000])
})

t.test('bad values are configuration errors naming the field', async (t) => {
  t.throws(() => servicesFrom(t, [entry({ websocket: 'yes' })]), ConfigError, 'websocket must be a boolean')
  for (const [bad, field] of [[{ wsMaxMessageBytes: 0 }, 'wsMaxMessageBytes'], [{ wsIdleTimeoutMs: 10 }, 'wsIdleTimeoutMs']] as const) {
    try {
      servicesFrom(t, [entry(bad)])
      t.fail(`${field} accepted`)
    } catch (err) {
      t.ok(err instanceof ConfigError)
      t.match((err as ConfigError).problems.join('\n'), new RegExp(`ROUTES_FILE: services\\.0\\.${field}`), field)
    }
  }
})
