// Calendar periods of quotas with a fake clock: hour, day and month boundaries in UTC and in zones
// with DST changes and odd offsets (docs/policies.md#quotas).
import t from 'tap'
import { canonicalTimeZone, isTimeZone, periodAt } from '../../lib/quota-period.js'

const at = (iso: string): number => Date.parse(iso)
const iso = (ms: number): string => new Date(ms).toISOString()
const period = (now: string, name: 'hour' | 'day' | 'month', zone?: string): [string, string] => {
  const p = periodAt(at(now), name, zone)
  return [iso(p.start), iso(p.end)]
}

t.test('UTC hour, day and month start at the calendar boundary', async (t) => {
  t.same(period('2026-03-14T15:09:26.535Z', 'hour'), ['2026-03-14T15:00:00.000Z', '2026-03-14T16:00:00.000Z'])
  t.same(period('2026-03-14T15:09:26.535Z', 'day'), ['2026-03-14T00:00:00.000Z', '2026-03-15T00:00:00.000Z'])
  t.same(period('2026-03-14T15:09:26.535Z', 'month'), ['2026-03-01T00:00:00.000Z', '2026-04-01T00:00:00.000Z'])
})

t.test('a boundary instant belongs to the new period; the last millisecond to the old one', async (t) => {
  t.same(period('2026-04-01T00:00:00.000Z', 'month'), ['2026-04-01T00:00:00.000Z', '2026-05-01T00:00:00.000Z'])
  t.same(period('2026-03-31T23:59:59.999Z', 'month'), ['2026-03-01T00:00:00.000Z', '2026-04-01T00:00:00.000Z'])
  t.same(period('2026-03-14T16:00:00.000Z', 'hour'), ['2026-03-14T16:00:00.000Z', '2026-03-14T17:00:00.000Z'])
  t.same(period('2026-03-14T15:59:59.999Z', 'hour'), ['2026-03-14T15:00:00.000Z', '2026-03-14T16:00:00.000Z'])
})

t.test('month ends: February in a leap year and not, December into January, 30-day months', async (t) => {
  t.same(period('2028-02-29T12:00:00Z', 'month'), ['2028-02-01T00:00:00.000Z', '2028-03-01T00:00:00.000Z'])
  t.same(period('2027-02-28T23:59:59Z', 'month'), ['2027-02-01T00:00:00.000Z', '2027-03-01T00:00:00.000Z'])
  t.same(period('2026-12-31T23:00:00Z', 'month'), ['2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z'])
  t.same(period('2026-04-30T23:59:59Z', 'day'), ['2026-04-30T00:00:00.000Z', '2026-05-01T00:00:00.000Z'])
})

t.test('days and months start at midnight in the zone, not in UTC', async (t) => {
  // 23:30 UTC on Jan 31 is already Feb 1 in Berlin (UTC+1).
  t.same(period('2026-01-31T23:30:00Z', 'month', 'Europe/Berlin'), ['2026-01-31T23:00:00.000Z', '2026-02-28T23:00:00.000Z'])
  t.same(period('2026-01-31T22:30:00Z', 'month', 'Europe/Berlin'), ['2025-12-31T23:00:00.000Z', '2026-01-31T23:00:00.000Z'])
  t.same(period('2026-06-10T03:00:00Z', 'day', 'America/New_York'), ['2026-06-09T04:00:00.000Z', '2026-06-10T04:00:00.000Z'])
})

t.test('DST: the spring-forward day has 23 hours and the fall-back day 25', async (t) => {
  // Europe/Berlin: 2026-03-29 02:00 -> 03:00; 2026-10-25 03:00 -> 02:00.
  t.same(period('2026-03-29T12:00:00Z', 'day', 'Europe/Berlin'), ['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z'])
  t.same(period('2026-10-25T12:00:00Z', 'day', 'Europe/Berlin'), ['2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z'])
  // The month holding the spring change is one hour shorter than 31 days.
  const march = periodAt(at('2026-03-15T00:00:00Z'), 'month', 'Europe/Berlin')
  t.equal(march.end - march.start, 31 * 86_400_000 - 3_600_000)
  // America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT.
  t.same(period('2026-03-08T12:00:00Z', 'day', 'America/New_York'), ['2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z'])
})

t.test('DST: hours stay real hours across the change, and the repeated hour is two periods', async (t) => {
  // 2026-10-25 in Berlin: 02:00-03:00 happens twice, at 00:00Z (CEST) and 01:00Z (CET).
  t.same(period('2026-10-25T00:30:00Z', 'hour', 'Europe/Berlin'), ['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z'])
  t.same(period('2026-10-25T01:30:00Z', 'hour', 'Europe/Berlin'), ['2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z'])
  // Spring forward: 01:59:59 CET is followed by 03:00 CEST, one hour apart as periods.
  t.same(period('2026-03-29T00:59:59Z', 'hour', 'Europe/Berlin'), ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z'])
  t.same(period('2026-03-29T01:00:00Z', 'hour', 'Europe/Berlin'), ['2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z'])
})

t.test('a zone offset by half an hour starts its hours at :30 UTC', async (t) => {
  t.same(period('2026-05-05T10:45:00Z', 'hour', 'Asia/Kolkata'), ['2026-05-05T10:30:00.000Z', '2026-05-05T11:30:00.000Z'])
  t.same(period('2026-05-05T10:15:00Z', 'day', 'Asia/Kolkata'), ['2026-05-04T18:30:00.000Z', '2026-05-05T18:30:00.000Z'])
})

t.test('a zone whose DST change skips midnight starts that day when the skip ends', async (t) => {
  // America/Santiago: 2026-09-06 00:00 -04 does not exist; the clock goes to 01:00 -03 (04:00Z).
  const [start, end] = period('2026-09-06T12:00:00Z', 'day', 'America/Santiago')
  t.equal(start, '2026-09-06T04:00:00.000Z')
  t.equal(end, '2026-09-07T03:00:00.000Z')
  // The day before ends where this one starts: no instant belongs to no period.
  t.equal(period('2026-09-06T03:59:59Z', 'day', 'America/Santiago')[1], start)
})

t.test('isTimeZone accepts IANA zones and refuses anything else', async (t) => {
  for (const z of ['UTC', 'Europe/Berlin', 'America/Argentina/Buenos_Aires', 'Asia/Kolkata']) t.ok(isTimeZone(z), z)
  for (const z of ['', 'Mars/Olympus', 'Europe/Berlin\n', 'x'.repeat(65), '+05:00', '../etc', 'Europe//Berlin']) t.notOk(isTimeZone(z), JSON.stringify(z))
})

t.test('zones are kept in their canonical spelling', async (t) => {
  t.equal(canonicalTimeZone('europe/berlin'), 'Europe/Berlin')
  t.equal(canonicalTimeZone('utc'), 'UTC')
})
