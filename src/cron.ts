// Cron expressions of a task's schedule: 5 fields (minute precision) or 6 (seconds first), read in an IANA
// time zone. Validation names what is wrong; next-time computation follows the zone's DST rules (croner).

import { Cron } from 'croner';
import { messageOf } from './errors.js';

/** Why `expression` is not a cron expression we accept, or undefined when it is fine. */
export function cronProblem(expression: string): string | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return `"${expression}" has ${fields.length} field(s); use 5 (minute hour day month weekday) or 6 (second first)`;
  }
  try {
    new Cron(expression, { paused: true, mode: fields.length === 6 ? '6-part' : '5-part' });
    return undefined;
  } catch (error) {
    return `"${expression}" is not a valid cron expression: ${messageOf(error)}`;
  }
}

/** Why `zone` is not an IANA time zone, or undefined when it is. */
export function timeZoneProblem(zone: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return undefined;
  } catch {
    // Intl throws a RangeError for an unknown zone; that is the answer, not a failure.
    return `"${zone}" is not an IANA time zone (e.g. "UTC", "Europe/Berlin")`;
  }
}

/** A parsed schedule line: the next fire time strictly after a given instant, in its zone. */
export class CronSchedule {
  private readonly cron: Cron;

  constructor(
    readonly expression: string,
    readonly timeZone: string,
  ) {
    const fields = expression.trim().split(/\s+/).length;
    this.cron = new Cron(expression, { paused: true, timezone: timeZone, mode: fields === 6 ? '6-part' : '5-part' });
  }

  /** The first fire time strictly after `after`, or undefined when the expression never fires again. */
  next(after: Date): Date | undefined {
    return this.cron.nextRun(after) ?? undefined;
  }

  /** Every fire time in (after, until], at most `limit` of them (oldest first). */
  between(after: Date, until: Date, limit = 1000): Date[] {
    const times: Date[] = [];
    for (let t = this.next(after); t && t.getTime() <= until.getTime() && times.length < limit; t = this.next(t)) {
      times.push(t);
    }
    return times;
  }
}
