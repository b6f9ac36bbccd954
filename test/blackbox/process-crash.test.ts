// A fault nothing in the process handled (here an injected promise rejection without a handler, as
// a library could leave one) ends the gateway as Node intends, but only after a JSON log line that
// says why (docs/operations.md#logs), with every line buffered before it written out.
import t from 'tap'
import { startGateway } from '../support/gateway-process.js'
import { http, nextIp } from '../support/http.js'
import { service } from '../support/suite.js'
import { echoUpstream } from '../support/upstreams.js'

// Loaded before the gateway: SIGUSR2 rejects a promise that nobody handles.
const INJECT = 'data:text/javascript,process.on("SIGUSR2",()=>{Promise.reject(new Error("injected fault"))})'

t.test('an unhandled rejection is logged as a fatal JSON line before the process exits 1', async (t) => {
  const echo = await echoUpstream(t)
  const gw = await startGateway(t, { services: [service('echo', '/api/echo', echo.url)], nodeArgs: ['--import', INJECT] })
  t.equal((await http(gw.port, '/api/echo/x', { localAddress: nextIp() })).status, 200, 'served before the fault')
  gw.signal('SIGUSR2')
  let timer: NodeJS.Timeout | undefined
  const exit = await Promise.race([gw.exited, new Promise((resolve) => { timer = setTimeout(resolve, 10_000, null) })])
  clearTimeout(timer)
  t.same(exit, { code: 1, signal: null }, 'the process exits with code 1')
  const crash = gw.logs.find((l) => l.event === 'process_crashed')
  t.ok(crash !== undefined, 'a process_crashed line is written')
  t.equal(crash?.level, 60, 'at fatal')
  t.equal(crash?.origin, 'unhandledRejection')
  t.match(crash?.msg, /injected fault/)
  t.match((crash?.err as { stack?: string } | undefined)?.stack, /injected fault/, 'with the stack')
  t.ok(gw.logs.some((l) => l.msg === 'request completed' && l.url === '/api/echo/x'), 'the access line buffered before it is written too')
})
