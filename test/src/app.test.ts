// MAX_CONNECTIONS (docs/configuration.md#load-shedding; docs/reliability.md, LD-10): connections over the cap are closed on
// accept, while those already open keep being served.
import t from 'tap'
import { listen } from '../support/app.js'
import { RawConnection } from '../support/raw-client.js'

t.test('MAX_CONNECTIONS closes connections beyond the cap; /health still answers on existing ones', async (t) => {
  const { app, url } = await listen(t, { MAX_CONNECTIONS: '5' })
  t.equal(app.server.maxConnections, 5)
  const port = Number(new URL(url).port)
  const open: RawConnection[] = []
  t.teardown(() => { for (const c of open) c.destroy() })
  for (let i = 0; i < 12; i++) open.push(await RawConnection.open(port))
  const closed = await Promise.all(open.map(async (c) => await c.waitForClose(1000)))
  t.same(closed.slice(0, 5), Array(5).fill(false), 'the first 5 stay open')
  t.same(closed.slice(5), Array(7).fill(true), 'the 7 beyond the cap are closed at once')
  const control = open[0]
  await control.write('GET /health HTTP/1.1\r\nHost: g\r\n\r\n')
  const [res] = await control.waitForResponses(1, 3000)
  t.equal(res?.status, 200, '/health answers on a connection opened before the cap was reached')

  open[1].destroy()
  await open[1].waitForClose(1000)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const later = await RawConnection.open(port)
  open.push(later)
  t.notOk(await later.waitForClose(500), 'a freed place is given to a new connection')
})

t.test('MAX_CONNECTIONS defaults to 10000', async (t) => {
  const { app } = await listen(t)
  t.equal(app.server.maxConnections, 10_000)
})
