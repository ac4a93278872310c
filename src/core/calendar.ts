export type CalendarPeriod = 'day' | 'week' | 'month';

/**
 * Four consecutive period boundaries around an instant: [b0, b1) is the previous period, [b1, b2) the one
 * holding the instant, [b2, b3) the next. Stores pick among the three by their own clock, so an authority
 * whose clock is a little off the store's still charges the period the store's time is in.
 */
export type PeriodBounds = readonly [number, number, number, number];

interface LocalDate {
  year: number;
  month: number; // 1..12
  day: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** True when the runtime knows the IANA time zone. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The offset of `timeZone` from UTC at `utcMs`, in milliseconds (positive east of Greenwich). */
function offsetAt(timeZone: string, utcMs: number): number {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(new Date(utcMs))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  const asUtc = Date.UTC(
    parts.year as number,
    (parts.month as number) - 1,
    parts.day as number,
    parts.hour as number,
    parts.minute as number,
    parts.second as number,
  );
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

function localDateOf(timeZone: string, utcMs: number): LocalDate {
  const local = new Date(utcMs + offsetAt(timeZone, utcMs));
  return { year: local.getUTCFullYear(), month: local.getUTCMonth() + 1, day: local.getUTCDate() };
}

/** The UTC instant of local midnight starting `date` in `timeZone` (DST-aware). */
function midnightUtc(timeZone: string, date: LocalDate): number {
  const naive = Date.UTC(date.year, date.month - 1, date.day);
  let guess = naive - offsetAt(timeZone, naive);
  // A second pass settles the offset when midnight and the naive guess straddle a DST change.
  guess = naive - offsetAt(timeZone, guess);
  return guess;
}

function addDays(date: LocalDate, days: number): LocalDate {
  const shifted = new Date(Date.UTC(date.year, date.month - 1, date.day + days));
  return { year: shifted.getUTCFullYear(), month: shifted.getUTCMonth() + 1, day: shifted.getUTCDate() };
}

function periodStartDate(period: CalendarPeriod, date: LocalDate): LocalDate {
  switch (period) {
    case 'day':
      return date;
    case 'week': {
      // ISO weeks start on Monday.
      const weekday = new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay();
      return addDays(date, -((weekday + 6) % 7));
    }
    case 'month':
      return { year: date.year, month: date.month, day: 1 };
  }
}

function shiftPeriod(period: CalendarPeriod, start: LocalDate, count: number): LocalDate {
  switch (period) {
    case 'day':
      return addDays(start, count);
    case 'week':
      return addDays(start, 7 * count);
    case 'month': {
      const months = start.year * 12 + (start.month - 1) + count;
      return { year: Math.floor(months / 12), month: (months % 12) + 1, day: 1 };
    }
  }
}

/** The calendar period boundaries around `nowMs` in `timeZone`. */
export function periodBounds(period: CalendarPeriod, timeZone: string, nowMs: number): PeriodBounds {
  const start = periodStartDate(period, localDateOf(timeZone, nowMs));
  const at = (count: number) => midnightUtc(timeZone, shiftPeriod(period, start, count));
  return [at(-1), at(0), at(1), at(2)];
}

/**
 * Remembers period boundaries until the period ends: the time-zone arithmetic above is far too slow for
 * every decision, and boundaries change only once a period.
 */
export class PeriodBoundsCache {
  readonly #entries = new Map<string, PeriodBounds>();

  get(period: CalendarPeriod, timeZone: string, nowMs: number): PeriodBounds {
    const id = `${period}\u0000${timeZone}`;
    const cached = this.#entries.get(id);
    if (cached && nowMs >= cached[1] && nowMs < cached[2]) return cached;
    const fresh = periodBounds(period, timeZone, nowMs);
    this.#entries.set(id, fresh);
    return fresh;
  }
}

/** Which of the three periods in `bounds` holds `nowMs`: its start and end. Outside all three, the middle one. */
export function periodAt(bounds: PeriodBounds, nowMs: number): { start: number; end: number } {
  if (nowMs >= bounds[0] && nowMs < bounds[1]) return { start: bounds[0], end: bounds[1] };
  if (nowMs >= bounds[2] && nowMs < bounds[3]) return { start: bounds[2], end: bounds[3] };
  return { start: bounds[1], end: bounds[2] };
}
