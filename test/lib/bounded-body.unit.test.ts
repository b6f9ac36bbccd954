import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { BoundedBody } from '../../lib/bounded-body.js'

async function collect (chunks: Buffer[], limit: number): Promise<Buffer[]> {
  const out: Buffer[] = []
  const bounded = new BoundedBody(limit)
  bounded.on('data', (c: Buffer) => out.push(c))
  await pipeline(Readable.from(chunks), bounded)
  return out
}

t.test('passes a body under the limit through intact', async (t) => {
  const out = await collect([Buffer.from('hello '), Buffer.from('world')], 100)
  t.equal(Buffer.concat(out).toString(), 'hello world')
})

t.test('coalesces many tiny chunks into few writes', async (t) => {
  const chunks = Array.from({ length: 40_000 }, () => Buffer.from('x'))
  const out = await collect(chunks, 1024 * 1024)
  t.equal(Buffer.concat(out).length, 40_000)
  t.ok(out.length <= 10, `${out.length} writes for 40,000 one-byte chunks`)
})

t.test('fails with 413 once the limit is passed', async (t) => {
  await t.rejects(collect([Buffer.alloc(60), Buffer.alloc(60)], 100), { code: 'GW_PAYLOAD_TOO_LARGE', statusCode: 413 })
})
