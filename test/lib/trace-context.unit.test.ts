// W3C traceparent parsing and the export-off sampling decision (docs/tracing.md#propagation).
import t from 'tap'
import { formatTraceparent, parseTraceparent, sampledBy } from '../../lib/trace-context.js'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const SPAN = '00f067aa0ba902b7'

t.test('a valid version-00 traceparent is read, with its sampled flag', async (t) => {
  t.same(parseTraceparent(`00-${TRACE}-${SPAN}-01`), { traceId: TRACE, spanId: SPAN, sampled: true })
  t.same(parseTraceparent(`00-${TRACE}-${SPAN}-00`), { traceId: TRACE, spanId: SPAN, sampled: false })
  t.same(parseTraceparent(`00-${TRACE}-${SPAN}-03`), { traceId: TRACE, spanId: SPAN, sampled: true }, 'other flag bits do not hide sampled')
})

t.test('a later version may carry more fields after a dash', async (t) => {
  t.same(parseTraceparent(`cc-${TRACE}-${SPAN}-01-more`), { traceId: TRACE, spanId: SPAN, sampled: true })
  t.equal(parseTraceparent(`cc-${TRACE}-${SPAN}-01more`), null)
})

t.test('invalid forms are refused', async (t) => {
  const cases = [
    undefined, '', 'garbage', [`00-${TRACE}-${SPAN}-01`, `00-${TRACE}-${SPAN}-01`],
    `00-${TRACE}-${SPAN}-01, 00-${TRACE}-${SPAN}-01`,
    `ff-${TRACE}-${SPAN}-01`, `0g-${TRACE}-${SPAN}-01`,
    `00-${TRACE.toUpperCase()}-${SPAN}-01`, `00-${'0'.repeat(32)}-${SPAN}-01`, `00-${TRACE}-${'0'.repeat(16)}-01`,
    `00-${TRACE}-${SPAN}-0x`, `00-${TRACE}-${SPAN}-01-extra`, `00_${TRACE}_${SPAN}_01`
  ]
  for (const c of cases) t.equal(parseTraceparent(c as string), null, JSON.stringify(c))
})

t.test('the traceparent a backend gets', async (t) => {
  t.equal(formatTraceparent(TRACE, SPAN, true), `00-${TRACE}-${SPAN}-01`)
  t.equal(formatTraceparent(TRACE, SPAN, false), `00-${TRACE}-${SPAN}-00`)
})

t.test('the sampled flag follows the sampler as the SDK would decide it', async (t) => {
  const parent = (sampled: boolean) => ({ traceId: TRACE, spanId: SPAN, sampled })
  t.equal(sampledBy({ name: 'parentbased_always_on', ratio: 1 }, null, null, TRACE), true)
  t.equal(sampledBy({ name: 'parentbased_always_on', ratio: 1 }, null, parent(false), TRACE), false)
  t.equal(sampledBy({ name: 'parentbased_always_off', ratio: 1 }, null, parent(true), TRACE), true)
  t.equal(sampledBy({ name: 'parentbased_always_off', ratio: 1 }, null, null, TRACE), false)
  t.equal(sampledBy({ name: 'always_on', ratio: 1 }, null, parent(false), TRACE), true)
  t.equal(sampledBy({ name: 'always_off', ratio: 1 }, null, parent(true), TRACE), false)
  t.equal(sampledBy({ name: 'traceidratio', ratio: 0 }, null, null, TRACE), false)
  t.equal(sampledBy({ name: 'traceidratio', ratio: 1 }, null, null, TRACE), true)
  // About a tenth of random trace ids at 0.1.
  let n = 0
  for (let i = 0; i < 2000; i++) {
    const id = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('')
    if (sampledBy({ name: 'parentbased_traceidratio', ratio: 0.1 }, null, null, id)) n++
  }
  t.ok(n > 100 && n < 300, `${n} of 2000 sampled at 0.1`)
})
