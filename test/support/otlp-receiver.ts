// A real OTLP/HTTP trace receiver for tests: a node:http server on port 0 that decodes what the
// OpenTelemetry SDK sends to /v1/traces, both OTLP/protobuf (decoded here from the wire format,
// independently of the SDK's own serializer) and OTLP/JSON, into one plain span shape.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardownable } from './basics.js'

export type SpanKindName = 'UNSET_KIND' | 'INTERNAL' | 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER'
export type StatusName = 'UNSET' | 'OK' | 'ERROR'
export type AttrValue = string | number | boolean | null

export interface ReceivedSpan {
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  traceState: string
  name: string
  kind: SpanKindName
  attributes: Record<string, AttrValue>
  status: StatusName
  /** The resource the span came with (service.name, …). */
  resource: Record<string, AttrValue>
  startNs: bigint
  endNs: bigint
}

export interface OtlpReceiver {
  /** The base URL (OTEL_EXPORTER_OTLP_ENDPOINT); spans go to `${url}/v1/traces`. */
  url: string
  spans: ReceivedSpan[]
  /** Content-Type of every export request received. */
  contentTypes: string[]
  /** How the receiver answers: 200, an error status, or never (a collector that hangs). */
  mode: 'ok' | 'error' | 'hang'
  /** Waits (polling, bounded) until `predicate` holds for the spans received; returns them. */
  waitFor (predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>
  /** Answers the exports a hanging receiver held with 200 (their spans are not kept) and goes back to 'ok'. */
  release (): void
  close (): Promise<void>
}

const KINDS: SpanKindName[] = ['UNSET_KIND', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER']
const STATUSES: StatusName[] = ['UNSET', 'OK', 'ERROR']

export async function otlpReceiver (t: Teardownable | null): Promise<OtlpReceiver> {
  const held: ServerResponse[] = []
  const receiver: OtlpReceiver = {
    url: '',
    spans: [],
    contentTypes: [],
    mode: 'ok',
    async waitFor (predicate, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      while (!predicate(receiver.spans)) {
        if (Date.now() > deadline) throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms; got ${receiver.spans.length} spans: ${receiver.spans.map((s) => `${s.kind} ${s.name}`).join(', ')}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return receiver.spans
    },
    release () {
      receiver.mode = 'ok'
      for (const res of held.splice(0)) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    },
    async close () {
      for (const res of held) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const type = String(req.headers['content-type'] ?? '')
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end()
        return
      }
      receiver.contentTypes.push(type)
      if (receiver.mode === 'hang') {
        held.push(res)
        return
      }
      if (receiver.mode === 'error') {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collector failing')
        return
      }
      const body = Buffer.concat(chunks)
      const json = type.includes('json')
      receiver.spans.push(...(json ? decodeJson(body) : decodeProtobuf(body)))
      if (json) res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t?.teardown(() => receiver.close())
  return receiver
}

// ---- OTLP/JSON ----

interface JsonAnyValue { stringValue?: string, boolValue?: boolean, intValue?: number | string, doubleValue?: number }
interface JsonKeyValue { key: string, value?: JsonAnyValue }

function jsonValue (v: JsonAnyValue | undefined): AttrValue {
  if (v === undefined) return null
  if (v.stringValue !== undefined) return v.stringValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  return null
}

const jsonAttrs = (list: JsonKeyValue[] | undefined): Record<string, AttrValue> =>
  Object.fromEntries((list ?? []).map((kv) => [kv.key, jsonValue(kv.value)]))

function decodeJson (body: Buffer): ReceivedSpan[] {
  const doc = JSON.parse(body.toString('utf8')) as {
    resourceSpans?: Array<{ resource?: { attributes?: JsonKeyValue[] }, scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>
  }
  const out: ReceivedSpan[] = []
  for (const rs of doc.resourceSpans ?? []) {
    const resource = jsonAttrs(rs.resource?.attributes)
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: String(s.traceId ?? ''),
          spanId: String(s.spanId ?? ''),
          parentSpanId: String(s.parentSpanId ?? ''),
          traceState: String(s.traceState ?? ''),
          name: String(s.name),
          kind: KINDS[Number(s.kind ?? 0)],
          attributes: jsonAttrs(s.attributes as JsonKeyValue[] | undefined),
          status: STATUSES[Number((s.status as { code?: number } | undefined)?.code ?? 0)],
          resource,
          startNs: BigInt(String(s.startTimeUnixNano ?? 0)),
          endNs: BigInt(String(s.endTimeUnixNano ?? 0))
        })
      }
    }
  }
  return out
}

// ---- OTLP/protobuf: the wire format (varint, fixed64, length-delimited, fixed32) ----

type Field = { wire: 0, value: number } | { wire: 1, value: Buffer } | { wire: 2, value: Buffer } | { wire: 5, value: Buffer }

function fields (buf: Buffer): Map<number, Field[]> {
  const out = new Map<number, Field[]>()
  let pos = 0
  const varint = (): number => {
    let result = 0
    let mul = 1
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint')
      const b = buf[pos++]
      result += (b & 0x7f) * mul
      if ((b & 0x80) === 0) return result
      mul *= 128
    }
  }
  while (pos < buf.length) {
    const tag = varint()
    const no = Math.floor(tag / 8)
    const wire = tag & 7
    let field: Field
    if (wire === 0) field = { wire, value: varint() }
    else if (wire === 1) { field = { wire, value: buf.subarray(pos, pos + 8) }; pos += 8 } else if (wire === 2) {
      const len = varint()
      field = { wire, value: buf.subarray(pos, pos + len) }
      pos += len
    } else if (wire === 5) { field = { wire, value: buf.subarray(pos, pos + 4) }; pos += 4 } else throw new Error(`unsupported wire type ${wire}`)
    let list = out.get(no)
    if (list === undefined) out.set(no, list = [])
    list.push(field)
  }
  return out
}

const bytesOf = (m: Map<number, Field[]>, no: number): Buffer[] => (m.get(no) ?? []).map((f) => f.value as Buffer)
const firstBytes = (m: Map<number, Field[]>, no: number): Buffer => bytesOf(m, no)[0] ?? Buffer.alloc(0)
const numberOf = (m: Map<number, Field[]>, no: number): number => (m.get(no)?.[0]?.value as number | undefined) ?? 0

function pbValue (buf: Buffer): AttrValue {
  const m = fields(buf)
  if (m.has(1)) return firstBytes(m, 1).toString('utf8')
  if (m.has(2)) return numberOf(m, 2) !== 0
  if (m.has(3)) return numberOf(m, 3)
  if (m.has(4)) return firstBytes(m, 4).readDoubleLE(0)
  return null
}

function pbAttrs (list: Buffer[]): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {}
  for (const kv of list) {
    const m = fields(kv)
    out[firstBytes(m, 1).toString('utf8')] = pbValue(firstBytes(m, 2))
  }
  return out
}

function decodeProtobuf (body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }
  for (const rsBuf of bytesOf(fields(body), 1)) {
    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }
    const rs = fields(rsBuf)
    const resource = pbAttrs(bytesOf(fields(firstBytes(rs, 1)), 1))
    for (const ssBuf of bytesOf(rs, 2)) {
      // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
      for (const spanBuf of bytesOf(fields(ssBuf), 2)) {
        const s = fields(spanBuf)
        const status = fields(firstBytes(s, 15))
        out.push({
          traceId: firstBytes(s, 1).toString('hex'),
          spanId: firstBytes(s, 2).toString('hex'),
          traceState: firstBytes(s, 3).toString('utf8'),
          parentSpanId: firstBytes(s, 4).toString('hex'),
          name: firstBytes(s, 5).toString('utf8'),
          kind: KINDS[numberOf(s, 6)],
          startNs: firstBytes(s, 7).length === 8 ? firstBytes(s, 7).readBigUInt64LE(0) : 0n,
          endNs: firstBytes(s, 8).length === 8 ? firstBytes(s, 8).readBigUInt64LE(0) : 0n,
          attributes: pbAttrs(bytesOf(s, 9)),
          status: STATUSES[numberOf(status, 3)],
          resource
        })
      }
    }
  }
  return out
}
