// TunnelLimits (plugins/websocket/tunnel-limits.ts): places per service and for the whole gateway.
import t from 'tap'
import { TunnelLimits } from '../../../plugins/websocket/tunnel-limits.js'

t.test('a service bound refuses its own next tunnel, not another service\'s', async (t) => {
  const limits = new TunnelLimits(null)
  const a1 = limits.take('a', 2)
  const a2 = limits.take('a', 2)
  t.ok(a1 !== null && a2 !== null)
  t.equal(limits.take('a', 2), null, 'a third for a is refused')
  t.ok(limits.take('b', 2) !== null, 'b has its own places')
  a1?.()
  t.ok(limits.take('a', 2) !== null, 'a place given back is free again')
})

t.test('the global bound counts every service; giving back twice counts once', async (t) => {
  const limits = new TunnelLimits(2)
  const a = limits.take('a', null)
  t.ok(limits.take('b', null) !== null)
  t.equal(limits.take('c', null), null, 'the third tunnel anywhere is refused')
  a?.()
  a?.()
  t.equal(limits.total, 1, 'one given back, once')
  t.equal(limits.held('a'), 0)
  t.ok(limits.take('c', null) !== null)
  t.equal(limits.take('a', null), null)
})

t.test('a lower bound set while tunnels are open refuses until enough have closed', async (t) => {
  const limits = new TunnelLimits(null)
  const open = [limits.take('a', 3), limits.take('a', 3), limits.take('a', 3)]
  t.equal(limits.take('a', 1), null)
  open[0]?.()
  open[1]?.()
  t.equal(limits.take('a', 1), null, 'one still open: the bound of 1 is full')
  open[2]?.()
  t.ok(limits.take('a', 1) !== null)
})
