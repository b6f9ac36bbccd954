// The handshake rules of plugins/websocket/handshake.ts, as plain functions.
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { backendHeaders, handshakeProblem, isSendableCode, isWebSocketUpgrade, offeredProtocols, offersDeflate, switchingHeaderLines } from '../../../plugins/websocket/handshake.js'

const GOOD = { upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }
const req = (headers: Record<string, string>, method = 'GET', url = '/chat') => ({ method, url, headers }) as unknown as IncomingMessage

t.test('only Upgrade: websocket is a WebSocket upgrade', async (t) => {
  t.ok(isWebSocketUpgrade(req({ upgrade: 'WebSocket ' })))
  t.notOk(isWebSocketUpgrade(req({ upgrade: 'h2c' })))
  t.notOk(isWebSocketUpgrade(req({})))
})

t.test('a malformed client handshake is named, a good one passes', async (t) => {
  t.equal(handshakeProblem(req(GOOD)), null)
  t.match(handshakeProblem(req(GOOD, 'POST')), /GET/)
  t.match(handshakeProblem(req(GOOD, 'GET', '/chat#x')), /fragment/)
  t.match(handshakeProblem(req({ ...GOOD, upgrade: 'h2c' })), /Upgrade: websocket/)
  t.match(handshakeProblem(req({ ...GOOD, 'sec-websocket-key': 'short' })), /Sec-WebSocket-Key/)
  t.match(handshakeProblem(req({ ...GOOD, 'sec-websocket-version': '8' })), /Version/)
  t.match(handshakeProblem(req({ ...GOOD, 'sec-websocket-protocol': 'a, a' })), /Protocol/)
})

t.test('subprotocol offers are tokens, distinct, in order', async (t) => {
  t.same(offeredProtocols({}), [])
  t.same(offeredProtocols({ 'sec-websocket-protocol': 'chat.v1, chat.v2' }), ['chat.v1', 'chat.v2'])
  t.equal(offeredProtocols({ 'sec-websocket-protocol': 'a b' }), null)
  t.equal(offeredProtocols({ 'sec-websocket-protocol': 'x,x' }), null)
})

t.test('permessage-deflate is recognised among offered extensions', async (t) => {
  t.ok(offersDeflate({ 'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits' }))
  t.ok(offersDeflate({ 'sec-websocket-extensions': 'x-foo, permessage-deflate' }))
  t.notOk(offersDeflate({ 'sec-websocket-extensions': 'permessage-deflater' }))
  t.notOk(offersDeflate({}))
})

t.test('the backend hop writes its own handshake fields', async (t) => {
  const out = backendHeaders({ 'sec-websocket-key': 'k', 'sec-websocket-protocol': 'p', 'sec-websocket-extensions': 'e', 'sec-websocket-version': '13', origin: 'https://app', 'x-request-id': 'r' }, 'b:1')
  t.same(out, { origin: 'https://app', 'x-request-id': 'r', host: 'b:1' })
})

t.test('the client 101 gets the backend\'s own fields and the gateway\'s, never hop or handshake fields', async (t) => {
  const lines = switchingHeaderLines(
    { 'set-cookie': ['a=1', 'b=2'], 'x-room': 'r1', 'sec-websocket-accept': 'x', connection: 'upgrade', 'x-request-id': 'backend' },
    { 'x-request-id': 'gw', ratelimit: '"default";r=9;t=1' }
  )
  t.same(lines, ['set-cookie: a=1', 'set-cookie: b=2', 'x-room: r1', 'x-request-id: gw', 'ratelimit: "default";r=9;t=1'])
})

t.test('close codes that may be sent', async (t) => {
  for (const code of [1000, 1001, 1009, 1011, 1014, 3000, 4999]) t.ok(isSendableCode(code), String(code))
  for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000]) t.notOk(isSendableCode(code), String(code))
})
