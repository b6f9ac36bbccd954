// Redis Cluster's key slot (CRC16/XMODEM of the hash tag, mod 16384), checked against values
// Redis itself answers for CLUSTER KEYSLOT.
import t from 'tap'
import { keySlot } from '../../../plugins/store/cluster-slot.js'

t.test('keySlot matches CLUSTER KEYSLOT', async (t) => {
  t.equal(keySlot('foo'), 12182)
  t.equal(keySlot('bar'), 5061)
  t.equal(keySlot('123456789'), 12739, 'the CRC16/XMODEM check value 0x31C3, mod 16384')
  t.equal(keySlot('{user1000}.following'), 3443, 'only the hash tag counts')
  t.equal(keySlot('{user1000}.followers'), 3443)
  t.equal(keySlot('{}x'), 10595, 'an empty tag: the whole key')
  t.equal(keySlot('a{}b{c}'), 7353, 'only the first { counts, and its tag is empty')
  t.equal(keySlot('é{ü}'), keySlot('{ü}'), 'UTF-8 bytes of the tag')
  t.equal(keySlot('gw:{keys}:all'), keySlot('{keys}'))
})
