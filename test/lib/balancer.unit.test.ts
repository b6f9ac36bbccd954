import t from 'tap'
import { Balancer } from '../../lib/balancer.js'

const three = [{ url: 'a', weight: 1 }, { url: 'b', weight: 1 }, { url: 'c', weight: 1 }]

t.test('round-robin cycles through every backend in order', async (t) => {
  const b = new Balancer(three, 'round-robin')
  t.same(Array.from({ length: 6 }, () => b.pick()), [0, 1, 2, 0, 1, 2])
})

t.test('round-robin skips unhealthy backends while a healthy one exists', async (t) => {
  const b = new Balancer(three, 'round-robin')
  const picks = Array.from({ length: 4 }, () => b.pick((i) => i !== 1))
  t.notOk(picks.includes(1))
})

t.test('when no backend is healthy one is still tried', async (t) => {
  const b = new Balancer(three, 'round-robin')
  t.ok([0, 1, 2].includes(b.pick(() => false)))
})

t.test('a retry avoids the backend that just failed when another exists', async (t) => {
  const b = new Balancer(three, 'round-robin')
  for (let i = 0; i < 10; i++) t.not(b.pick(() => true, 1), 1)
})

t.test('weighted spreads picks in proportion to the weights, smoothly', async (t) => {
  const b = new Balancer([{ url: 'a', weight: 3 }, { url: 'b', weight: 1 }], 'weighted')
  const picks = Array.from({ length: 8 }, () => b.pick())
  t.equal(picks.filter((p) => p === 0).length, 6)
  t.same(picks.slice(0, 4).sort(), [0, 0, 0, 1])
})

t.test('random uses the injected source over the allowed backends', async (t) => {
  const b = new Balancer(three, 'random', () => 0.99)
  t.equal(b.pick(), 2)
  t.equal(b.pick((i) => i !== 2), 1)
})
