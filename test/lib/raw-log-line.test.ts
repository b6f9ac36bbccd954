import t from 'tap'
import pino, { type LoggerOptions } from 'pino'
import { Writable } from 'node:stream'
import { rawLineWriter } from '../../lib/raw-log-line.js'
import { REDACT } from '../../src/app.js'
import { requestSerializer } from '../../plugins/access-log.js'

const KEYS = ['reqId', 'url', 'status', 'consumer']

/** A pino logger writing into memory, with a fixed clock so two lines can be compared byte for byte. */
function capture (options: LoggerOptions = {}): { logger: pino.Logger, lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const logger = pino({ level: 'debug', timestamp: () => ',"time":1733000000000', ...options }, stream)
  return { logger, lines }
}

/** What the gateway's logger is configured with (src/app.ts), but for the stream. */
const GATEWAY: LoggerOptions = { redact: { paths: REDACT, censor: '[REDACTED]' }, serializers: { req: requestSerializer as never } }

const ENTRIES: Array<Record<string, unknown>> = [
  { reqId: 'r-1', url: '/api/users/7?page=2', status: 200, consumer: null },
  { reqId: 'r-2', url: '/quote"and\\back\nslash\u0001', status: 502, consumer: 'c-42' },
  { reqId: 'r-3', url: '/ünïcödé/€/🦊', status: 404, consumer: 'ключ' },
  { reqId: 'r-4', url: '/' + 'x'.repeat(300), status: 1.25, consumer: null }
]

const asFields = (entry: Record<string, unknown>): string =>
  Object.entries(entry).map(([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`).join('')

t.test('writes the line pino would write for the same fields, byte for byte', async (t) => {
  for (const options of [{}, GATEWAY]) {
    const viaPino = capture(options)
    const viaRaw = capture(options)
    const write = rawLineWriter(viaRaw.logger, KEYS)
    if (write === null) throw new Error('expected a raw writer')
    for (const entry of ENTRIES) {
      viaPino.logger.info(entry, 'request completed')
      write(30, asFields(entry), 'request completed')
      viaPino.logger.debug(entry, 'debug line')
      write(20, asFields(entry), 'debug line')
    }
    t.same(viaRaw.lines, viaPino.lines)
    for (const line of viaRaw.lines) t.doesNotThrow(() => JSON.parse(line), 'each line is JSON')
  }
})

t.test('carries the logger\'s bindings and custom level labels as pino does', async (t) => {
  const options: LoggerOptions = { base: { service: 'gw' }, formatters: { level: (label) => ({ severity: label }) } }
  const viaPino = capture(options)
  const viaRaw = capture(options)
  const write = rawLineWriter(viaRaw.logger, KEYS) as NonNullable<ReturnType<typeof rawLineWriter>>
  viaPino.logger.info(ENTRIES[0], 'm')
  write(30, asFields(ENTRIES[0]), 'm')
  t.same(viaRaw.lines, viaPino.lines)
  t.match(viaRaw.lines[0], /^\{"severity":"info","time":1733000000000,"service":"gw","reqId":"r-1"/)
})

t.test('gives no raw writer to a logger that could reshape the line', async (t) => {
  const cases: Record<string, LoggerOptions> = {
    mixin: { mixin: () => ({ extra: 1 }) },
    'log formatter': { formatters: { log: (o) => o } },
    'logMethod hook': { hooks: { logMethod (args, method) { method.apply(this, args) } } },
    'streamWrite hook': { hooks: { streamWrite: (s) => s } },
    'message prefix': { msgPrefix: '[gw] ' },
    'nested key': { nestedKey: 'payload' },
    'serializer of a field': { serializers: { url: () => 'x' } },
    'redaction of a field': { redact: ['url'] },
    'redaction of every field': { redact: ['*'] }
  }
  for (const [name, options] of Object.entries(cases)) {
    t.equal(rawLineWriter(capture(options).logger, KEYS), null, name)
  }
  t.equal(rawLineWriter({ info () {}, level: 'info' } as never, KEYS), null, 'not a pino logger')
  t.not(rawLineWriter(capture(GATEWAY).logger, KEYS), null, 'the gateway\'s own configuration gets one')
})
