// Text formatting for backupctl: aligned tables, key/value blocks, sizes, times and durations.

export type Align = 'left' | 'right';

export interface TableOptions {
  align?: readonly Align[];
  /** Cut the last column so no line is wider than this (a terminal's width). */
  maxWidth?: number;
  /** Shown for an empty cell (default `-`). */
  blank?: string;
}

function cell(text: string, blank = '-'): string {
  const flat = text.replace(/\s*\n\s*/g, ' ');
  return flat === '' ? blank : flat;
}

/** Columns separated by two spaces, headers as given, empty cells as `-`, no trailing spaces. */
export function table(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  options: TableOptions = {},
): string {
  const all = [headers.map((h) => h), ...rows.map((row) => headers.map((_, i) => cell(row[i] ?? '', options.blank)))];
  const widths = headers.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  const last = headers.length - 1;
  if (options.maxWidth !== undefined && last >= 0) {
    const before = widths.slice(0, last).reduce((sum, w) => sum + w + 2, 0);
    widths[last] = Math.max(Math.min(widths[last]!, options.maxWidth - before), headers[last]!.length, 8);
  }
  return all
    .map((row) =>
      row
        .map((text, i) => {
          const width = widths[i]!;
          const fitted = text.length > width ? `${text.slice(0, width - 1)}…` : text;
          if (i === last) return options.align?.[i] === 'right' ? fitted.padStart(width) : fitted;
          return options.align?.[i] === 'right' ? fitted.padStart(width) : fitted.padEnd(width);
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `key:  value` lines with the values aligned. */
export function keyValues(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length + 1));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${cell(value)}`.trimEnd()).join('\n');
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** Decimal units, as in MB/s: 999 B, 1.5 kB, 12.3 MB. */
export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 1000) return `${Math.max(0, Math.round(Number.isFinite(n) ? n : 0))} B`;
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${UNITS[unit]}`;
}

/** An ISO time as `2026-11-22 05:00:00Z`; empty stays empty, anything unparsable is shown as given. */
export function time(iso: string | undefined): string {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return `${new Date(t).toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** Seconds as `0.4 s`, `12 s`, `3m 05s`, `2h 01m`. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The seconds between two ISO times, or undefined when either is missing. */
export function secondsBetween(start: string | undefined, end: string | undefined): number | undefined {
  if (!start || !end) return undefined;
  const s = Date.parse(start);
  const e = Date.parse(end);
  return Number.isNaN(s) || Number.isNaN(e) ? undefined : (e - s) / 1000;
}
