// The concurrency cap on its own (lib/concurrency.ts): slots, the bounded FIFO queue, its
// timeout, waiters that leave, and taking the service and global caps together.
import t from 'tap'
import { acquireAll, ConcurrencyLimit, type Refusal } from '../../lib/concurrency.js'

const tick = async (ms = 0): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('hands out at most max slots and takes them back', async (t) => {
  const limit = new ConcurrencyLimit(2)
  t.ok(limit.tryAcquire())
  t.ok(limit.tryAcquire())
  t.notOk(limit.tryAcquire(), 'the third is refused')
  limit.release()
  t.equal(limit.active, 1)
  t.ok(limit.tryAcquire(), 'a freed slot can be taken again')
})

t.test('a freed slot goes to the oldest waiter, in order', async (t) => {
  const limit = new ConcurrencyLimit(1, 5)
  t.ok(limit.tryAcquire())
  const order: string[] = []
  limit.wait(1000, () => order.push('a'), () => order.push('a refused'))
  limit.wait(1000, () => order.push('b'), () => order.push('b refused'))
  t.equal(limit.waiting, 2)
  t.notOk(limit.tryAcquire(), 'a newcomer cannot jump the queue')
  limit.release()
  t.same(order, ['a'])
  t.equal(limit.active, 1, 'the slot changed hands without being freed')
  limit.release()
  t.same(order, ['a', 'b'])
  limit.release()
  t.equal(limit.active, 0)
})

t.test('a waiter is refused when its time is up, and leaves the queue', async (t) => {
  const limit = new ConcurrencyLimit(1)
  limit.tryAcquire()
  const outcome: Array<string | Refusal> = []
  limit.wait(30, () => outcome.push('granted'), (why) => outcome.push(why))
  await tick(80)
  t.same(outcome, ['timeout'])
  t.equal(limit.waiting, 0)
  limit.release()
  t.equal(limit.active, 0, 'the release did not go to the expired waiter')
})

t.test('no queue (timeout 0) and a full queue refuse at once, never synchronously', async (t) => {
  const limit = new ConcurrencyLimit(1, 1)
  limit.tryAcquire()
  const outcome: Refusal[] = []
  limit.wait(0, t.fail, (why) => outcome.push(why))
  limit.wait(1000, t.fail, (why) => outcome.push(why)) // takes the one queue place
  limit.wait(1000, t.fail, (why) => outcome.push(why))
  t.same(outcome, [], 'not from inside wait()')
  await tick()
  t.same(outcome, ['timeout', 'full'])
  t.equal(limit.waiting, 1)
})

t.test('a waiter that withdraws leaves the queue and is never called', async (t) => {
  const limit = new ConcurrencyLimit(1, 1)
  limit.tryAcquire()
  const withdraw = limit.wait(1000, t.fail, t.fail)
  withdraw()
  withdraw()
  t.equal(limit.waiting, 0, 'its place is free for another')
  limit.release()
  t.equal(limit.active, 0)
  await tick(20)
})

t.test('acquireAll takes every cap and gives all of them back once', async (t) => {
  const service = new ConcurrencyLimit(1)
  const global = new ConcurrencyLimit(1)
  let release: (() => void) | null = null
  acquireAll([service, global], 0, (r) => { release = r }, t.fail)
  t.equal(service.active, 1)
  t.equal(global.active, 1)
  const r = release as unknown as () => void
  r()
  r()
  t.equal(service.active, 0)
  t.equal(global.active, 0, 'released exactly once')
})

t.test('acquireAll waits on the global cap within the same deadline, then gives the service slot back', async (t) => {
  const service = new ConcurrencyLimit(2)
  const global = new ConcurrencyLimit(1)
  global.tryAcquire()
  const outcome: Refusal[] = []
  acquireAll([service, global], 40, t.fail, (why) => outcome.push(why))
  t.equal(service.active, 1, 'the service slot is held while waiting for the global one')
  await tick(100)
  t.same(outcome, ['timeout'])
  t.equal(service.active, 0, 'and given back on refusal')
})

t.test('acquireAll gets the global slot when it frees within the deadline', async (t) => {
  const service = new ConcurrencyLimit(1)
  const global = new ConcurrencyLimit(1)
  global.tryAcquire()
  let got = false
  acquireAll([service, global], 1000, () => { got = true }, t.fail)
  global.release()
  t.ok(got)
  t.equal(global.active, 1)
  t.equal(service.active, 1)
})

t.test('withdrawing a pending acquireAll gives back what it held and ignores a late refusal', async (t) => {
  const service = new ConcurrencyLimit(1)
  const global = new ConcurrencyLimit(1)
  global.tryAcquire()
  const withdraw = acquireAll([service, global], 1000, t.fail, t.fail)
  withdraw()
  t.equal(service.active, 0)
  t.equal(global.waiting, 0)
  global.release()
  t.equal(global.active, 0)

  const busy = new ConcurrencyLimit(1)
  busy.tryAcquire()
  const late = acquireAll([busy], 0, t.fail, t.fail) // refusal is deferred to the next tick
  late()
  await tick()
  t.equal(busy.active, 1)
})

t.test('a raised cap hands its new slots to the oldest waiters, never from inside resize()', async (t) => {
  const limit = new ConcurrencyLimit(1, 5)
  t.ok(limit.tryAcquire())
  const order: string[] = []
  for (const name of ['a', 'b', 'c']) limit.wait(1000, () => order.push(name), () => order.push(`${name} refused`))
  limit.resize(3, 5)
  t.same(order, [], 'granted later')
  t.equal(limit.active, 3, 'the two new slots are taken by waiters')
  t.equal(limit.waiting, 1)
  await tick()
  t.same(order, ['a', 'b'])
  t.notOk(limit.tryAcquire(), 'full at the new cap')
})

t.test('under a lowered cap, slots given back go to the pool until the count is under it', async (t) => {
  const limit = new ConcurrencyLimit(3, 5)
  for (let i = 0; i < 3; i++) limit.tryAcquire()
  const order: string[] = []
  limit.wait(1000, () => order.push('a'), () => order.push('a refused'))
  limit.resize(1, 5)
  t.equal(limit.active, 3, 'slots held stay held')
  limit.release()
  limit.release()
  t.equal(limit.active, 1)
  t.same(order, [], 'still at the new cap: the waiter waits')
  limit.release()
  t.same(order, ['a'], 'the slot that brings the count under the cap goes to the waiter')
  t.equal(limit.active, 1)
})
