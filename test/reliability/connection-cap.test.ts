// Load (docs/reliability.md), LD-10 with a connection cap: 500 keep-alive clients and a control
// client connected, then a flood of 2,000 idle connections against MAX_CONNECTIONS=1000. The flood
// fills the cap and the rest is closed on accept; the clients already connected keep being served
// within budget; the admin listener (ADMIN_PORT) is not part of the public cap; memory stays bounded.
import t from 'tap'
import { freePort, sleep } from '../support/basics.js'
import { startGateway } from '../support/gateway-process.js'
import { http, metricValue, parseMetrics } from '../support/http.js'
import { percentile } from '../support/load.js'
import { RawConnection } from '../support/raw-client.js'
import { service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'

t.setTimeout(5 * 60_000)
const MiB = 1024 * 1024
const CAP = 1000

const echo = await echoUpstream(t)
const adminPort = await freePort()
const gw = await startGateway(t, {
  services: [service('echo', '/api/echo', echo.url)],
  env: {
    MAX_CONNECTIONS: String(CAP),
    ADMIN_PORT: String(adminPort),
    // Idle connections stay until the test ends, so the count at the cap is exact.
    HEADERS_TIMEOUT_MS: '60000',
    REQUEST_TIMEOUT_MS: '120000',
    KEEP_ALIVE_TIMEOUT_MS: '120000',
    RATE_LIMIT_BURST: '100000',
    RATE_LIMIT_RPM: '6000000'
  }
})
const rss = async (): Promise<number> => metricValue(parseMetrics((await http(adminPort, '/metrics')).body), 'process_resident_memory_bytes')

t.test('LD-10 connections over MAX_CONNECTIONS are closed at once; connected clients keep being served', async (t) => {
  const rss0 = await rss()
  const control = await RawConnection.open(gw.port)
  // Warm-up: the first proxied request opens the upstream pool; it is not part of the measurement.
  await control.write('GET /api/echo/warm-up HTTP/1.1\r\nHost: g\r\n\r\n')
  await control.waitForResponses(1, 5000)
  const kaConns = await Promise.all(Array.from({ length: 500 }, async () => await RawConnection.open(gw.port)))
  t.teardown(() => { control.destroy(); for (const c of kaConns) c.destroy() })

  const idle: RawConnection[] = []
  let failedToConnect = 0
  for (let i = 0; i < 2000; i++) {
    try {
      idle.push(await RawConnection.open(gw.port, { localAddress: `127.0.${2 + (i >> 8)}.${(i & 255) || 1}` }))
    } catch {
      failedToConnect++
    }
  }
  t.teardown(() => { for (const c of idle) c.destroy() })
  await sleep(1000)
  const open = idle.filter((c) => !c.closed)
  const closed = idle.filter((c) => c.closed)
  t.comment(`idle flood: ${open.length} held, ${closed.length} closed, ${failedToConnect} failed to connect`)
  t.ok(open.length + 501 <= CAP, `no more than MAX_CONNECTIONS are held (${open.length} idle + 501 clients)`)
  t.ok(open.length >= CAP - 501 - 10, `up to the cap is accepted (${open.length} idle held)`)
  t.equal(closed.length + failedToConnect, 2000 - open.length, 'every other connection was refused or closed')
  t.ok(closed.every((c) => c.closedAt !== null && c.closedAt - c.startedAt < 1000), 'closed within 1 s of connecting')
  t.equal((await http(adminPort, '/health')).status, 200, 'the admin listener is outside the public cap')

  // For 10 s: each keep-alive client asks /health every 2 s; the control client proxies every 100 ms.
  const stop = Date.now() + 10_000
  const ka = { asked: 0, answered: 0 }
  const kaLoops = kaConns.map(async (c, i) => {
    await sleep((i * 4) % 2000)
    let n = 0
    while (Date.now() < stop && !c.closed) {
      await c.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n')
      ka.asked++
      n++
      await c.waitForResponses(n, 5000)
      if (c.finals().length >= n) ka.answered++
      await sleep(2000)
    }
  })
  const latencies: number[] = []
  let n = 1
  while (Date.now() < stop) {
    const started = performance.now()
    await control.write(`GET /api/echo/control/${n} HTTP/1.1\r\nHost: g\r\n\r\n`)
    n++
    await control.waitForResponses(n, 5000)
    const finals = control.finals()
    latencies.push(finals.length >= n && finals[n - 1].status === 200 ? performance.now() - started : Infinity)
    await sleep(100)
  }
  await Promise.all(kaLoops)
  const p99 = percentile(latencies, 99)
  t.comment(`keep-alive clients: ${ka.answered}/${ka.asked} answered; control: ${latencies.length} requests, p99 ${p99.toFixed(1)} ms`)
  t.ok(latencies.every(Number.isFinite), 'every control request was served on its existing connection')
  t.ok(p99 < 500, `control p99 within budget (${p99.toFixed(1)} ms < 500 ms)`)
  t.equal(ka.answered, ka.asked, 'the keep-alive clients are served')
  t.ok(ka.asked >= 500, `each keep-alive client asked at least once (${ka.asked})`)

  const rss1 = await rss()
  t.ok(rss1 - rss0 < 150 * MiB, `memory bounded (+${((rss1 - rss0) / MiB).toFixed(0)} MiB)`)

  for (const c of idle) c.destroy()
  await sleep(500)
  const after = await http(gw.port, '/health', { timeoutMs: 5000 })
  t.equal(after.status, 200, 'once the flood is gone a new connection is accepted again')
})
