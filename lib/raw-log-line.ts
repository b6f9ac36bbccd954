// A log line whose fields are already JSON, written through a pino logger's own stream in the exact
// layout pino would give it: `{"level":N,"time":…,<bindings>,<fields>,"msg":…}`. The access line
// (plugins/access-log.ts) is the one line written for every request, and pino spends most of its
// cost on generic work that line does not need: a pass over an object's keys with a serializer and
// a stringifier lookup and an escape of each key. Built by hand it is a template and one
// JSON.stringify per string field.
//
// The prefix (level, time, bindings) and the line's end come from the logger itself through
// `pino.symbols`, which pino exposes for integrations of this kind. A logger configured with anything
// that changes a line between the fields and the stream (a mixin, a log formatter, hooks, a message
// prefix, a nested key, serializers or redaction of these fields, a multistream needing metadata) gets no raw
// writer: the caller logs through pino as usual. Lines written here do not pass pino's `asJson`
// diagnostics channel (a tool subscribed to it sees every other line, not these).
import pino, { type Logger } from 'pino'
import type { FastifyBaseLogger } from 'fastify'

const S = pino.symbols
// Present in pino's symbols since message prefixes came (v8.14), missing from its typings.
const msgPrefixSym = (S as unknown as Record<string, symbol>).msgPrefixSym

/** Writes one line: `fields` is `,"name":value…` (already JSON), `level` pino's level number. */
export type RawLineWriter = (level: number, fields: string, msg: string) => void

type Internals = Record<symbol, unknown> & {
  [S.lsCacheSym]: Record<number, string>
  [S.timeSym]: () => string
  [S.chindingsSym]: string
  [S.endSym]: string
  [S.streamSym]: { write (line: string): unknown, [S.needsMetadataGsym]?: boolean }
  [S.messageKeySym]: string
}

/**
 * A raw writer for `logger`, or null when its configuration could change a line in a way this
 * writer would not reproduce. `keys` are the field names the caller writes.
 */
export function rawLineWriter (logger: FastifyBaseLogger | Logger, keys: readonly string[]): RawLineWriter | null {
  const l = logger as unknown as Internals
  const stream = l[S.streamSym]
  if (stream === undefined || typeof l[S.timeSym] !== 'function' || l[S.lsCacheSym] === undefined) return null // not pino
  const hooks = l[S.hooksSym] as { logMethod?: unknown, streamWrite?: unknown } | undefined
  const formatters = l[S.formattersSym] as { log?: unknown } | undefined
  const serializers = l[S.serializersSym] as Record<string, unknown>
  const stringifiers = l[S.stringifiersSym] as Record<string | symbol, unknown>
  const messageKey = l[S.messageKeySym]
  const reshaped = Boolean(l[S.mixinSym]) || Boolean(hooks?.logMethod) || Boolean(hooks?.streamWrite) ||
    Boolean(formatters?.log) || typeof l[msgPrefixSym] === 'string' || Boolean(l[S.nestedKeySym]) ||
    stream[S.needsMetadataGsym] === true || Boolean(stringifiers[S.wildcardFirstSym]) ||
    [...keys, messageKey].some((key) => serializers[key] !== undefined || stringifiers[key] !== undefined)
  if (reshaped) return null
  const levels = l[S.lsCacheSym]
  const end = l[S.endSym]
  const msgKey = `,${JSON.stringify(messageKey)}:`
  return function writeRaw (level, fields, msg) {
    // Bindings and the clock are read at each line, as pino does: setBindings() replaces the former.
    stream.write(levels[level] + l[S.timeSym]() + l[S.chindingsSym] + fields + msgKey + JSON.stringify(msg) + end)
  }
}
