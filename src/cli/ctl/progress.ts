// The progress bar of long runs (backup, restore, verify): phase, bytes done of total, speed. On a terminal
// it redraws one line; elsewhere (a log, a pipe) it prints a line every few seconds and on phase changes.

import { bytes } from './format.js';
import type { TextSink } from './output.js';

export interface ProgressState {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
}

/**
 * One line: `publishing [#######.......]  52%  12.3 MB / 23.6 MB  4.10 MB/s`. With `barWidth` 0 the bar is
 * left out; with no total (0) only the bytes done are shown.
 */
export function renderProgress(state: ProgressState, bytesPerSecond: number | undefined, barWidth: number): string {
  const parts = [state.phase || 'starting'];
  const known = state.bytesTotal > 0;
  const fraction = known ? Math.min(1, Math.max(0, state.bytesDone / state.bytesTotal)) : 0;
  if (known) {
    if (barWidth > 0) {
      const filled = Math.round(fraction * barWidth);
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]`);
    }
    parts.push(`${String(Math.floor(fraction * 100)).padStart(3)}%`);
    parts.push(`${bytes(state.bytesDone)} / ${bytes(state.bytesTotal)}`);
  } else {
    parts.push(bytes(state.bytesDone));
  }
  if (bytesPerSecond !== undefined) parts.push(`${bytes(bytesPerSecond)}/s`);
  return parts.join('  ');
}

export interface ProgressViewOptions {
  /** Milliseconds clock; injected in tests. */
  now?: () => number;
  /** On a non-terminal, at most one line per this many ms while the phase stays the same. */
  lineIntervalMs?: number;
  /** Shown before the bar, e.g. the run id when several runs are watched. */
  label?: string;
}

const RATE_WINDOW_MS = 5_000;
const REDRAW_MS = 100;

/** Draws the progress of one operation to `sink`; call update() with each report, then finish(). */
export class ProgressView {
  private readonly now: () => number;
  private readonly tty: boolean;
  private readonly lineIntervalMs: number;
  private readonly label: string;
  private samples: { at: number; done: number }[] = [];
  private phase: string | undefined;
  private lastDrawAt = Number.NEGATIVE_INFINITY;
  private lastText = '';
  private drawnWidth = 0;
  private pending: ProgressState | undefined;

  constructor(
    private readonly sink: TextSink,
    options: ProgressViewOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.tty = sink.isTTY === true;
    this.lineIntervalMs = options.lineIntervalMs ?? 5_000;
    this.label = options.label ? `${options.label}  ` : '';
  }

  /** Bytes per second over the last few seconds of the current phase; undefined until measurable. */
  rate(): number | undefined {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < 500) return undefined;
    return Math.max(0, ((last.done - first.done) * 1000) / (last.at - first.at));
  }

  update(state: ProgressState): void {
    const at = this.now();
    const phaseChanged = state.phase !== this.phase;
    if (phaseChanged) {
      // The end of the phase before, with its speed, stays in a log.
      if (!this.tty && this.phase !== undefined && this.pending) this.emitLine(this.pending);
      this.samples = [];
    }
    this.phase = state.phase;
    this.samples.push({ at, done: state.bytesDone });
    while (this.samples.length > 2 && at - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    this.pending = state;
    if (this.tty) {
      if (phaseChanged || at - this.lastDrawAt >= REDRAW_MS) this.redraw(state, at);
    } else if (phaseChanged || at - this.lastDrawAt >= this.lineIntervalMs) {
      this.emitLine(state, at);
    }
  }

  /** Draw the last state for good and end the line, so what follows starts on a fresh line. */
  finish(): void {
    const state = this.pending;
    if (this.tty) {
      if (state) this.redraw(state, this.now());
      if (this.drawnWidth > 0) this.sink.write('\n');
      this.drawnWidth = 0;
    } else if (state) {
      this.emitLine(state);
    }
    this.pending = undefined;
  }

  private barWidth(): number {
    const columns = this.sink.columns ?? 80;
    return Math.max(10, Math.min(40, columns - 60 - this.label.length));
  }

  private redraw(state: ProgressState, at: number): void {
    const columns = this.sink.columns ?? 80;
    let text = this.label + renderProgress(state, this.rate(), this.barWidth());
    if (text.length > columns - 1) text = text.slice(0, columns - 1);
    // Carriage return, the line, then blanks over whatever the longer previous line left behind.
    this.sink.write(`\r${text}${' '.repeat(Math.max(0, this.drawnWidth - text.length))}`);
    this.drawnWidth = text.length;
    this.lastDrawAt = at;
  }

  private emitLine(state: ProgressState, at?: number): void {
    const text = this.label + renderProgress(state, this.rate(), 0);
    if (at !== undefined) this.lastDrawAt = at;
    if (text === this.lastText) return;
    this.sink.write(`${text}\n`);
    this.lastText = text;
  }
}
