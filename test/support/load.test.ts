// The load harness's keep-alive race handling: a request reset on a reused connection is sent once
// more on a fresh one (Node's request.reusedSocket); a reset on a fresh connection is reported.
// A raw TCP server stands in for the race, so it happens on every run rather than by chance.
import { createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { sender } from './load.js'

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok'

/** Answers the first request on each connection; resets a connection's later ones (or all, with resetAll). */
async function racyServer (t: { teardown (fn: () => unknown): void }, resetAll = false): Promise<{ port: number, connections: () => number }> {
  let connections = 0
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let requests = 0
    socket.on('data', () => {
      requests++
      if (resetAll || requests > 1) socket.resetAndDestroy()
      else socket.write(OK)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  return { port: (server.address() as AddressInfo).port, connections: () => connections }
}

t.test('a request reset on a reused keep-alive connection is sent once more on a fresh one', async (t) => {
  const server = await racyServer(t)
  const s = sender()
  t.teardown(() => s.close())
  const first = await s.send(server.port, { path: '/a' })
  t.equal(first.status, 200)
  t.notOk(first.resent, 'the first request went out once')
  const second = await s.send(server.port, { path: '/b' })
  t.equal(second.status, 200, 'answered on a fresh connection')
  t.equal(second.resent, true, 'and marked as resent')
  t.equal(server.connections(), 2)
})

t.test('a reset on a fresh connection, or of a request with a body, is reported, not resent', async (t) => {
  const always = await racyServer(t, true)
  const s = sender()
  t.teardown(() => s.close())
  const hit = await s.send(always.port, { path: '/a' })
  t.same([hit.status, hit.error, hit.resent], [0, 'ECONNRESET', undefined])
  t.equal(always.connections(), 1, 'sent once')

  const server = await racyServer(t)
  t.equal((await s.send(server.port, { path: '/a' })).status, 200)
  const post = await s.send(server.port, { path: '/b', method: 'POST', body: 'x' })
  t.same([post.status, post.error], [0, 'ECONNRESET'], 'a body is never sent twice')
})
