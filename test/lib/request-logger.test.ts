// A request's logger makes its pino child only when it writes a line (lib/request-logger.ts): the
// lines it writes are the child's, and the access line names the request id where the child would.
import t from 'tap'
import { Writable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { REDACT, buildApp } from '../../src/app.js'
import { requestSerializer } from '../../plugins/access-log.js'
import { RequestLogger } from '../../lib/request-logger.js'
import { testConfig } from '../support/app.js'

type Teardownable = Parameters<typeof testConfig>[0]

async function gateway (t: Teardownable) {
  const raw: string[] = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') raw.push(l)
      cb()
    }
  })
  const app = await buildApp(testConfig(t, { LOG_LEVEL: 'info' }), {
    logger: { level: 'info', stream, redact: { paths: REDACT, censor: '[REDACTED]' }, serializers: { req: requestSerializer } }
  })
  const loggers: FastifyBaseLogger[] = []
  app.addHook('onResponse', async (request) => { loggers.push(request.log) })
  app.get('/t/quiet', async (request) => {
    request.log.debug('below the level')
    return { level: request.log.level, debug: (request.log as RequestLogger).isLevelEnabled('debug') }
  })
  app.get('/t/chatty', async (request) => {
    request.log.warn({ event: 'something_odd' }, 'a warning')
    request.log.child({ step: 'inner' }).info('from a child')
    return { ok: true }
  })
  t.teardown(() => app.close())
  await app.ready()
  return { app, raw, loggers, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

t.test('a request that logs only its access line makes no pino child; the line names its id where a child would', async (t) => {
  const { app, raw, loggers } = await gateway(t)
  const res = await app.inject({ url: '/t/quiet', headers: { 'x-request-id': 'quiet-1' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { level: 'info', debug: false }, 'the level is the app\'s')
  t.equal(loggers.length, 1)
  t.ok(loggers[0] instanceof RequestLogger, 'the request\'s logger is a RequestLogger')
  t.equal((loggers[0] as RequestLogger).materialized, false, 'no child was made: the debug line was below the level')
  const access = raw.filter((l) => l.includes('"msg":"request completed"'))
  t.equal(access.length, 1)
  t.match(access[0], /^\{"level":30,"time":\d+,"pid":\d+,"hostname":"[^"]*","reqId":"quiet-1","method":"GET",/, 'reqId right after the base fields, as pino\'s child writes it')
  t.notOk(raw.some((l) => l.includes('below the level')), 'the debug line was not written')
})

t.test('a request that logs makes its child once; its lines and its children\'s carry the request id', async (t) => {
  const { app, lines, loggers } = await gateway(t)
  const res = await app.inject({ url: '/t/chatty', headers: { 'x-request-id': 'chatty-1' } })
  t.equal(res.statusCode, 200)
  t.equal((loggers[0] as RequestLogger).materialized, true)
  const all = lines()
  t.match(all.find((l) => l.msg === 'a warning'), { level: 40, reqId: 'chatty-1', event: 'something_odd' })
  t.match(all.find((l) => l.msg === 'from a child'), { level: 30, reqId: 'chatty-1', step: 'inner' })
  t.match(all.find((l) => l.msg === 'request completed'), { reqId: 'chatty-1', status: 200 })
  t.equal(all.filter((l) => 'reqId' in l && l.reqId === 'chatty-1').length, 3, 'no line lost or doubled')
})

t.test('two requests keep their own ids', async (t) => {
  const { app, lines } = await gateway(t)
  await Promise.all([
    app.inject({ url: '/t/chatty', headers: { 'x-request-id': 'a-1' } }),
    app.inject({ url: '/t/chatty', headers: { 'x-request-id': 'b-2' } })
  ])
  const warnings = lines().filter((l) => l.msg === 'a warning').map((l) => l.reqId).sort()
  t.same(warnings, ['a-1', 'b-2'])
})
