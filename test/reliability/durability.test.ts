// Faults (docs/reliability.md), durability of admin writes: FT-15 (SIGKILL right after acknowledged
// writes, SQLite and Redis AOF) and FT-17 (admin writes while the store is unavailable).
import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startGateway, type GatewayProcess } from '../support/gateway-process.js'
import { admin, createKey, http, nextIp, type CreatedKey } from '../support/http.js'
import { redisEnv } from '../support/redis-env.js'
import { startRedis } from '../support/redis-server.js'
import { service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'
import { sleep, tempDir } from '../support/basics.js'

t.setTimeout(6 * 60_000)
const echo = await echoUpstream(t)
const services = [service('echo', '/api/echo', echo.url)]

/** Creates 300 keys and revokes the first 100, every call acknowledged. */
async function writeKeys (t: Test, gw: GatewayProcess): Promise<{ live: CreatedKey[], revoked: CreatedKey[] }> {
  const keys: CreatedKey[] = []
  for (let i = 0; i < 300; i++) keys.push(await createKey(gw.port, { name: `ft15-${i}` }))
  let revokes = 0
  for (const k of keys.slice(0, 100)) {
    const res = await admin(gw.port, 'POST', `/admin/apikeys/${k.id}/revoke`)
    if (res.status === 200 || res.status === 204) revokes++
  }
  t.equal(revokes, 100, '300 creates and 100 revokes acknowledged')
  return { revoked: keys.slice(0, 100), live: keys.slice(100) }
}

async function checkKeys (t: Test, gw: GatewayProcess, live: CreatedKey[], revoked: CreatedKey[]): Promise<void> {
  let liveOk = 0
  for (const k of live) if ((await http(gw.port, '/api/echo/x', { headers: { 'x-api-key': k.raw } })).status === 200) liveOk++
  t.equal(liveOk, 200, 'the 200 live keys authenticate after the restart')
  let revokedRefused = 0
  for (const k of revoked) if ((await http(gw.port, '/api/echo/x', { headers: { 'x-api-key': k.raw } })).status === 401) revokedRefused++
  t.equal(revokedRefused, 100, 'the 100 revoked keys get 401')
  const list = (await admin(gw.port, 'GET', '/admin/apikeys')).json().data as Array<{ id: string, active: boolean }>
  t.equal(list.length, 300, 'the list shows every acknowledged key')
  t.equal(list.filter((k) => k.active).length, 200, 'exactly 200 of them active')
  t.equal(new Set(list.map((k) => k.id)).size, 300, 'no duplicate ids')
}

t.test('FT-15 SQLite: acknowledged writes survive SIGKILL and the file stays intact', async (t) => {
  const cwd = tempDir(t, 'gw-ft15-')
  const gw = await startGateway(t, { services, cwd })
  const { live, revoked } = await writeKeys(t, gw)
  gw.kill()
  await gw.exited
  const db = join(cwd, 'data', 'gateway.db')
  const check = execFileSync('sqlite3', [db, 'PRAGMA integrity_check'], { encoding: 'utf8' }).trim()
  t.equal(check, 'ok', 'PRAGMA integrity_check = ok after SIGKILL')
  const again = await startGateway(t, { services, cwd })
  await checkKeys(t, again, live, revoked)
})

t.test('FT-15 Redis with appendfsync always: acknowledged writes survive SIGKILL of gateway and Redis', async (t) => {
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const env = redisEnv(redis.url)
  const gw = await startGateway(t, { services, env })
  const { live, revoked } = await writeKeys(t, gw)
  gw.kill()
  await Promise.all([gw.exited, redis.kill('SIGKILL')])
  await redis.restart()
  const again = await startGateway(t, { services, env })
  await checkKeys(t, again, live, revoked)
})

function assertRefusedWrite (t: Test, res: { status: number, headers: Record<string, unknown>, body: string }, label: string): void {
  t.equal(res.status, 503, `${label}: 503`)
  t.ok(Number(res.headers['retry-after']) >= 1, `${label}: with Retry-After`)
  t.notMatch(res.body, /gw_[A-Za-z0-9_-]{10,}/, `${label}: no raw key for a key that was not stored`)
}

t.test('FT-17 admin create while SQLite is locked by another process: 503, then exactly one key on retry', async (t) => {
  const gw = await startGateway(t, { services })
  await createKey(gw.port, { name: 'before' })
  const db = join(gw.cwd, 'data', 'gateway.db')
  const locker = spawn('sqlite3', [db], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(() => { if (locker.exitCode === null) locker.kill('SIGKILL') })
  let out = ''
  locker.stdout.on('data', (d) => { out += d })
  locker.stdin.write('BEGIN EXCLUSIVE;\nSELECT \'locked\';\n')
  for (let i = 0; i < 50 && !out.includes('locked'); i++) await sleep(50)
  t.match(out, /locked/, 'another process holds an exclusive lock')

  const body = { name: 'ft17-sqlite' }
  const refused = await admin(gw.port, 'POST', '/admin/apikeys', body, nextIp())
  assertRefusedWrite(t, refused, 'locked')
  locker.stdin.end('ROLLBACK;\n.quit\n')
  await new Promise((resolve) => locker.once('exit', resolve))
  const ok = await admin(gw.port, 'POST', '/admin/apikeys', body, nextIp())
  t.equal(ok.status, 201, 'the retry is created')
  const list = (await admin(gw.port, 'GET', '/admin/apikeys')).json().data as Array<{ name: string }>
  t.equal(list.filter((k) => k.name === 'ft17-sqlite').length, 1, 'exactly one key exists for the two attempts')
})

t.test('FT-17 admin create while Redis is down: 503, then exactly one key on retry', async (t) => {
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const gw = await startGateway(t, { services, env: redisEnv(redis.url) })
  await createKey(gw.port, { name: 'before' })
  await redis.kill('SIGKILL')
  const body = { name: 'ft17-redis' }
  const refused = await admin(gw.port, 'POST', '/admin/apikeys', body, nextIp())
  assertRefusedWrite(t, refused, 'Redis down')
  const listDown = await admin(gw.port, 'GET', '/admin/apikeys', undefined, nextIp())
  t.ok(listDown.status === 503 || listDown.status === 200, `listing while down: 503 or 200, never 500 (${listDown.status})`)
  await redis.restart()
  let ok = { status: 0 }
  for (let i = 0; i < 50 && ok.status !== 201; i++) {
    ok = await admin(gw.port, 'POST', '/admin/apikeys', body, nextIp())
    if (ok.status !== 201) await sleep(100)
  }
  t.equal(ok.status, 201, 'the retry is created once Redis is back')
  const list = (await admin(gw.port, 'GET', '/admin/apikeys')).json().data as Array<{ name: string }>
  t.equal(list.filter((k) => k.name === 'ft17-redis').length, 1, 'exactly one key exists')
})
