// Faults (docs/reliability.md), graceful shutdown: FT-13 (SIGTERM with a request in flight) and
// FT-14 (a stuck request and the drain timeout; a second signal). Each case starts its own gateway
// child.
import t from 'tap'
import { probe, startGateway } from '../support/gateway-process.js'
import { http, nextIp, type HttpResponse } from '../support/http.js'
import { RawConnection } from '../support/raw-client.js'
import { service } from '../support/suite.js'
import { blackHoleUpstream, echoUpstream, slowUpstream } from '../support/upstreams.js'
import { sleep, until } from '../support/basics.js'

async function settle<T> (p: Promise<T>): Promise<{ ok: true, value: T } | { ok: false, error: string }> {
  try {
    return { ok: true, value: await p }
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    return { ok: false, error: err.code ?? err.message }
  }
}

async function exitWithin (gw: { exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }> }, ms: number) {
  return await Promise.race([gw.exited, sleep(ms).then(() => null)])
}

t.test('FT-13 SIGTERM lets the in-flight request finish, refuses new work, closes idle sockets and exits 0', async (t) => {
  const slow = await slowUpstream(t, 2000)
  const echo = await echoUpstream(t)
  const gw = await startGateway(t, {
    services: [service('slow', '/api/slow', slow.url, { timeoutMs: 5000 }), service('echo', '/api/echo', echo.url)],
    env: { SHUTDOWN_TIMEOUT_MS: '10000' }
  })
  // C: an idle keep-alive client.
  const c = await RawConnection.open(gw.port, { localAddress: nextIp() })
  t.teardown(() => c.destroy())
  await c.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n')
  await c.waitForResponses(1, 3000)
  t.equal(c.finals()[0]?.status, 200, 'C was served once and stays connected')

  // A: in flight when the signal arrives.
  const started = Date.now()
  const a = settle(http(gw.port, '/api/slow/a', { localAddress: nextIp(), timeoutMs: 15000 }))
  t.ok(await until(() => slow.requests.length > 0, 10000), 'A reached the upstream before the signal')
  gw.signal('SIGTERM')
  t.ok(await gw.waitForLog((l) => l.event === 'shutdown_draining', 10000), 'the drain began')
  // B: a new client after the signal.
  const b = await settle(http(gw.port, '/api/echo/b', { localAddress: nextIp(), timeoutMs: 5000 }))
  if (b.ok) {
    t.equal(b.value.status, 503, 'B: 503 if it got in at all')
    t.equal(b.value.headers.connection, 'close', 'B: with Connection: close')
  } else {
    // Refused or reset, not left hanging: a timeout is a failure.
    t.ok(['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(b.error), `B: connection refused or reset (${b.error})`)
  }
  const health = await probe(gw.port, '/health')
  t.ok(health === 0 || health === 503, `/health is 503 or refused after the signal (got ${health || 'refused'})`)
  t.ok(await c.waitForClose(2000), 'C: the idle keep-alive socket is closed')

  const ra = await a
  t.ok(ra.ok && ra.value.status === 200, `A completes with 200 (${ra.ok ? ra.value.status : ra.error})`)
  if (ra.ok) t.equal(JSON.parse((ra.value as HttpResponse).body).url, '/api/slow/a', 'A gets its full body')
  t.ok(Date.now() - started >= 1900, 'A was not cut short')

  const exit = await exitWithin(gw, 10000)
  t.equal(exit?.code, 0, 'the gateway exits 0 within the 10 s drain')
  const last = gw.logs.at(-1)
  t.equal(last?.event, 'shutdown_complete', 'the last log line is shutdown_complete')
  t.equal(last?.inflight, 0, 'with inflight=0')
  t.equal(await probe(gw.port, '/health'), 0, 'nothing listens any more')
})

t.test('FT-14 a stuck request is cut at the drain timeout and the gateway exits', async (t) => {
  const hole = await blackHoleUpstream(t)
  const gw = await startGateway(t, {
    services: [service('hole', '/api/hole', hole.url, { timeoutMs: 30000 })],
    env: { SHUTDOWN_TIMEOUT_MS: '3000' }
  })
  const connections = hole.connections
  const stuck = settle(http(gw.port, '/api/hole/x', { localAddress: nextIp(), timeoutMs: 20000 }))
  t.ok(await until(() => hole.connections > connections, 10000), 'the request is in flight at the upstream')
  const signalled = Date.now()
  gw.signal('SIGTERM')
  const r = await stuck
  const cutAfter = Date.now() - signalled
  t.ok((r.ok && r.value.status === 503) || !r.ok, `the stuck request gets 503 or a reset (${r.ok ? r.value.status : r.error})`)
  t.ok(cutAfter >= 2500, `not before the 3 s drain timeout (${cutAfter} ms)`)
  const exit = await exitWithin(gw, 10000)
  t.equal(exit?.code, 1, `the gateway exits 1 (code ${exit?.code}, signal ${exit?.signal})`)
  t.ok(gw.logs.some((l) => l.event === 'shutdown_timeout' && typeof l.aborted === 'number' && l.aborted >= 1), 'shutdown_timeout gives the number of aborted requests')
})

t.test('FT-14 a second signal exits at once', async (t) => {
  const hole = await blackHoleUpstream(t)
  const gw = await startGateway(t, {
    services: [service('hole', '/api/hole', hole.url, { timeoutMs: 60000 })],
    env: { SHUTDOWN_TIMEOUT_MS: '30000' }
  })
  const connections = hole.connections
  const stuck = settle(http(gw.port, '/api/hole/x', { localAddress: nextIp(), timeoutMs: 20000 }))
  t.ok(await until(() => hole.connections > connections, 10000), 'the request is in flight at the upstream')
  gw.signal('SIGTERM')
  t.ok(await gw.waitForLog((l) => l.event === 'shutdown_started', 10000), 'the first signal started the drain')
  t.ok(gw.running, 'still draining after the first SIGTERM')
  gw.signal('SIGINT')
  const exit = await exitWithin(gw, 5000)
  t.ok(exit !== null, 'the second signal ends the process without waiting for the 30 s drain')
  await stuck
})

t.test('SHUTDOWN_DELAY_MS: after SIGTERM the gateway keeps accepting and serving with /health 503, then drains and exits 0', async (t) => {
  const echo = await echoUpstream(t)
  const gw = await startGateway(t, {
    services: [service('echo', '/api/echo', echo.url)],
    env: { SHUTDOWN_DELAY_MS: '4000', SHUTDOWN_TIMEOUT_MS: '5000' }
  })
  // A keep-alive client connected before the signal.
  const c = await RawConnection.open(gw.port, { localAddress: nextIp() })
  t.teardown(() => c.destroy())
  await c.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n')
  await c.waitForResponses(1, 3000)
  t.equal(c.finals()[0]?.status, 200, 'served before the signal')

  gw.signal('SIGTERM')
  t.ok(await gw.waitForLog((l) => l.event === 'shutdown_started'), 'shutdown began')
  await c.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n')
  const [, second] = (await c.waitForResponses(2, 3000)).filter((r) => r.status >= 200)
  t.equal(second?.status, 503, 'the existing keep-alive connection gets /health 503, not a reset')
  t.same(JSON.parse(second?.body.toString() ?? '{}'), { status: 'draining' })
  t.equal(c.error, null, 'no reset')

  const fresh = await http(gw.port, '/health', { localAddress: nextIp() })
  t.equal(fresh.status, 503, 'a new connection is accepted: /health 503')
  t.same(fresh.json(), { status: 'draining' })
  t.equal((await http(gw.port, '/ready', { localAddress: nextIp() })).status, 503, '/ready 503')
  const proxied = await http(gw.port, '/api/echo/during-delay', { localAddress: nextIp() })
  t.equal(proxied.status, 200, 'everything else is still served')
  t.equal(proxied.headers.connection, 'close', 'with Connection: close, so keep-alive clients move before the drain')
  t.equal(echo.requests.at(-1)?.url, '/api/echo/during-delay')
  t.equal((await http(gw.port, '/info', { localAddress: nextIp() })).status, 200, "the gateway's own routes too")
  t.notOk(gw.logs.some((l) => l.event === 'shutdown_draining'), 'and the drain has not begun yet')

  t.ok(await gw.waitForLog((l) => l.event === 'shutdown_draining', 10000), 'after the delay the drain begins')
  const exit = await exitWithin(gw, 10000)
  t.equal(exit?.code, 0, 'and the gateway exits 0')
  t.equal(gw.logs.at(-1)?.event, 'shutdown_complete')
})
