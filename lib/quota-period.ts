// Calendar periods of API-key quotas (docs/policies.md#quotas): which hour, day or month an instant
// falls in, in an IANA time zone, as [start, end) in epoch ms. Pure: the caller passes the clock
// (the Redis server's, or Date.now() for the embedded store), so tests use a fake one.
//
// hour: the zone's own hours. At a DST change a real hour is still one period, and a zone offset
//       by half an hour (Asia/Kolkata) has its hours start at :30 UTC.
// day:  from the zone's midnight to the next; 23 or 25 hours long on DST change days. A midnight
//       the zone skips (a DST change at 00:00) starts the day at the first instant that exists.
// month: from the 1st at midnight to the next 1st.

export type QuotaPeriodName = 'hour' | 'day' | 'month'

export interface Period {
  start: number
  end: number
}

const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000

const formats = new Map<string, Intl.DateTimeFormat>()

function formatFor (zone: string): Intl.DateTimeFormat {
  let f = formats.get(zone)
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric'
    })
    formats.set(zone, f)
  }
  return f
}

/** Whether `zone` is an IANA time zone this runtime knows (`UTC` included). */
export function isTimeZone (zone: string): boolean {
  // A name (`Area/Location`, `UTC`, `Etc/GMT+5`), not an offset such as `+05:00` that newer
  // runtimes also accept: an operator names the zone whose DST rules the periods follow.
  if (zone.length > 64 || !/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(zone)) return false
  try {
    formatFor(zone)
    return true
  } catch {
    return false
  }
}

/** The zone's canonical spelling (`europe/berlin` → `Europe/Berlin`); call with a valid zone. */
export function canonicalTimeZone (zone: string): string {
  return formatFor(zone).resolvedOptions().timeZone
}

interface Wall { year: number, month: number, day: number, hour: number, minute: number, second: number }

/** The zone's wall clock at `t`. */
function wallAt (t: number, zone: string): Wall {
  const w: Wall = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 }
  for (const part of formatFor(zone).formatToParts(t)) {
    if (part.type in w) w[part.type as keyof Wall] = Number(part.value)
  }
  return w
}

/** The zone's offset from UTC at `t`, in ms (whole seconds: sub-second parts are not formatted). */
function offsetAt (t: number, zone: string): number {
  const w = wallAt(t, zone)
  const local = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second)
  return local - (t - (((t % 1000) + 1000) % 1000))
}

/**
 * The first instant whose wall clock in `zone` is `local` (a wall time written as if it were UTC),
 * or, when the zone skips that wall time, the instant the skip ends. Assumes at most one offset
 * change within a day of it, as every zone has.
 */
function instantOf (local: number, zone: string): number {
  const before = local - offsetAt(local - DAY_MS, zone)
  const after = local - offsetAt(local + DAY_MS, zone)
  const valid = (t: number): boolean => t + offsetAt(t, zone) === local
  const a = valid(before)
  const b = valid(after)
  if (a && b) return Math.min(before, after)
  if (a) return before
  if (b) return after
  // A gap: `before` (old offset) is where the new offset begins.
  return Math.max(before, after)
}

/** The period of `name` in `zone` that holds the instant `now` (epoch ms). */
export function periodAt (now: number, name: QuotaPeriodName, zone = 'UTC'): Period {
  if (name === 'hour') {
    const offset = offsetAt(now, zone)
    const start = now - ((((now + offset) % HOUR_MS) + HOUR_MS) % HOUR_MS)
    return { start, end: start + HOUR_MS }
  }
  const w = wallAt(now, zone)
  const [from, to] = name === 'day'
    ? [Date.UTC(w.year, w.month - 1, w.day), Date.UTC(w.year, w.month - 1, w.day + 1)]
    : [Date.UTC(w.year, w.month - 1, 1), Date.UTC(w.year, w.month, 1)]
  return { start: instantOf(from, zone), end: instantOf(to, zone) }
}
