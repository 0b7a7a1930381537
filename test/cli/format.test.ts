// Tables, sizes, times, and the progress bar on a terminal (redrawn in place) and elsewhere (a line every
// few seconds), with an injected clock.

import { describe, expect, it } from 'vitest';
import { bytes, duration, keyValues, table, time } from '../../src/cli/ctl/format.js';
import { ProgressView, renderProgress } from '../../src/cli/ctl/progress.js';
import { sink } from './support.js';

describe('table', () => {
  it('aligns columns two spaces apart, shows empty cells as -, trims line ends', () => {
    expect(
      table(
        ['NAME', 'SIZE', 'NOTE'],
        [
          ['orders', '12.3 MB', ''],
          ['a', '1 B', 'multi\nline'],
        ],
        { align: ['left', 'right', 'left'] },
      ),
    ).toBe(['NAME       SIZE  NOTE', 'orders  12.3 MB  -', 'a           1 B  multi line'].join('\n'));
  });

  it('cuts the last column to the width, with an ellipsis', () => {
    const text = table(['ID', 'ERROR'], [['r1', 'x'.repeat(50)]], { maxWidth: 20 });
    for (const line of text.split('\n')) expect(line.length).toBeLessThanOrEqual(20);
    expect(text).toContain('…');
  });

  it('a custom blank, and a header-only table', () => {
    expect(table(['A', 'B'], [['', 'x']], { blank: '' })).toBe('A  B\n   x');
    expect(table(['A', 'B'], [])).toBe('A  B');
  });

  it('key/value blocks', () => {
    expect(
      keyValues([
        ['name', 'nightly'],
        ['preferred node', ''],
      ]),
    ).toBe('name:            nightly\npreferred node:  -');
  });
});

describe('units', () => {
  it('bytes in decimal units', () => {
    expect([0, 999, 1000, 12_345, 123_456_789, 4.2e12].map(bytes)).toEqual([
      '0 B',
      '999 B',
      '1.00 kB',
      '12.3 kB',
      '123 MB',
      '4.20 TB',
    ]);
  });
  it('times and durations', () => {
    expect(time('2026-11-22T05:00:00.123Z')).toBe('2026-11-22 05:00:00Z');
    expect(time('')).toBe('');
    expect(time('soon')).toBe('soon');
    expect([0.42, 12.4, 185, 7260].map(duration)).toEqual(['0.4 s', '12 s', '3m 05s', '2h 01m']);
  });
});

describe('renderProgress', () => {
  it('phase, bar, percent, bytes and speed', () => {
    expect(renderProgress({ phase: 'publishing', bytesDone: 52_000_000, bytesTotal: 100_000_000 }, 4_100_000, 10)).toBe(
      'publishing  [#####.....]   52%  52.0 MB / 100 MB  4.10 MB/s',
    );
  });
  it('without a bar, and without a known total', () => {
    expect(renderProgress({ phase: 'reading', bytesDone: 1_000_000, bytesTotal: 2_000_000 }, undefined, 0)).toBe(
      'reading   50%  1.00 MB / 2.00 MB',
    );
    expect(renderProgress({ phase: 'reading', bytesDone: 5_000, bytesTotal: 0 }, 1_000, 10)).toBe(
      'reading  5.00 kB  1.00 kB/s',
    );
  });
  it('never draws more than a full bar', () => {
    expect(renderProgress({ phase: 'x', bytesDone: 300, bytesTotal: 100 }, undefined, 4)).toBe(
      'x  [####]  100%  300 B / 100 B',
    );
  });
});

describe('ProgressView', () => {
  function clock() {
    let t = 0;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  }

  it('on a terminal redraws one line with \\r, measures speed, and ends with a newline', () => {
    const out = sink(true, 100);
    const c = clock();
    const view = new ProgressView(out, { now: c.now });
    view.update({ phase: 'reading', bytesDone: 0, bytesTotal: 10_000_000 });
    c.advance(1000);
    view.update({ phase: 'reading', bytesDone: 5_000_000, bytesTotal: 10_000_000 });
    c.advance(50); // within the redraw interval: not drawn now, but finish() draws the last state
    view.update({ phase: 'reading', bytesDone: 5_100_000, bytesTotal: 10_000_000 });
    view.finish();
    const frames = out.text.split('\r').slice(1);
    expect(out.text.startsWith('\r')).toBe(true);
    expect(out.text.endsWith('\n')).toBe(true);
    expect(frames).toHaveLength(3);
    expect(frames[1]).toContain('50%  5.00 MB / 10.0 MB  5.00 MB/s');
    expect(frames[2]).toContain('51%  5.10 MB / 10.0 MB');
    expect(out.text.split('\n')).toHaveLength(2);
    for (const frame of frames) expect(frame.replace('\n', '').length).toBeLessThan(100);
  });

  it('on a terminal a shorter line blanks what the longer one left', () => {
    const out = sink(true, 100);
    const c = clock();
    const view = new ProgressView(out, { now: c.now });
    view.update({ phase: 'publishing-long-phase', bytesDone: 1, bytesTotal: 2 });
    c.advance(200);
    view.update({ phase: 'done', bytesDone: 0, bytesTotal: 0 });
    const [, first, second] = out.text.split('\r');
    expect(second!.length).toBe(first!.length);
    expect(second!.trimEnd()).toBe('done  0 B');
  });

  it('elsewhere prints a line on phase changes and every interval, never redraws', () => {
    const out = sink(false);
    const c = clock();
    const view = new ProgressView(out, { now: c.now, lineIntervalMs: 5000 });
    view.update({ phase: 'reading', bytesDone: 0, bytesTotal: 100_000_000 }); // line: first state
    for (let i = 1; i <= 10; i++) {
      c.advance(1000);
      view.update({ phase: 'reading', bytesDone: i * 1_000_000, bytesTotal: 100_000_000 }); // line at 5 s and 10 s
    }
    c.advance(1000);
    view.update({ phase: 'publishing', bytesDone: 0, bytesTotal: 50_000_000 }); // last reading state, then publishing
    view.finish(); // same as the last line: not repeated
    expect(out.text).not.toContain('\r');
    expect(out.text.split('\n').filter(Boolean)).toEqual([
      'reading    0%  0 B / 100 MB',
      'reading    5%  5.00 MB / 100 MB  1.00 MB/s',
      'reading   10%  10.0 MB / 100 MB  1.00 MB/s',
      'publishing    0%  0 B / 50.0 MB',
    ]);
  });

  it('elsewhere finish() prints the final state once', () => {
    const out = sink(false);
    const c = clock();
    const view = new ProgressView(out, { now: c.now, label: 'r7' });
    view.update({ phase: 'verifying', bytesDone: 0, bytesTotal: 10 });
    c.advance(100);
    view.update({ phase: 'verifying', bytesDone: 10, bytesTotal: 10 });
    view.finish();
    expect(out.text).toBe('r7  verifying    0%  0 B / 10 B\nr7  verifying  100%  10 B / 10 B\n');
  });
});
