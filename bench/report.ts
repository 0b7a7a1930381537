// What the benchmark found, as records, the targets checked against them, and the tables it
// prints. Sizes are in MB (10^6 bytes) and throughput in MB/s of the database's size on disk.

import type { Step } from './reference.js';
import type { Verification } from './verify.js';

export type ToolId = 'ours-backup' | 'ours-snapshot' | 'restic' | 'baseline';
export type Phase = 'full' | 'incr' | 'restore';

export interface PhaseResult {
  wallMs: number;
  /** The largest peak of the phase's steps (they run one after the other). */
  peakRssBytes: number;
  /** full: bytes stored; incr: bytes the second backup added; restore: size of the restored database. */
  bytes: number;
  /** Database size this phase's throughput is computed from. */
  dbBytes: number;
  steps: Step[];
  /** Tool-specific figures (our BackupResult, restic's summary), kept in the JSON. */
  detail?: unknown;
  verification?: Verification;
  /** Printed in the notes column. */
  note?: string;
}

export interface ToolResult {
  id: ToolId;
  label: string;
  phases: Partial<Record<Phase, PhaseResult>>;
  errors: { phase: string; message: string }[];
  /** A concurrent writer's commits during one more full backup of ours (bench/writer.ts). */
  writerWait?: WriterWait;
}

export interface WriterWait {
  transactions: number;
  longestWaitMs: number;
  medianWaitMs: number;
  /** The full backup it ran beside. */
  backupMs: number;
}

export interface TargetCheck {
  what: string;
  value: number | undefined;
  /** Printed, e.g. ">= 1.5x". */
  target: string;
  pass: boolean | undefined;
}

export interface GrowthCheck {
  tool: ToolId;
  small: { dbBytes: number; peakRssBytes: number } | undefined;
  large: { dbBytes: number; peakRssBytes: number } | undefined;
  /** large / small peak. */
  ratio: number | undefined;
  pass: boolean | undefined;
}

export const MEMORY_LIMIT_BYTES = 300e6;
/** "Memory does not grow with size": 4x the data may cost at most this much more peak memory. */
export const GROWTH_TOLERANCE = 1.2;

export function phaseOf(steps: Step[], bytes: number, dbBytes: number, detail?: unknown): PhaseResult {
  return {
    wallMs: steps.reduce((sum, s) => sum + s.wallMs, 0),
    peakRssBytes: Math.max(...steps.map((s) => s.peakRssBytes)),
    bytes,
    dbBytes,
    steps,
    detail,
  };
}

/** The targets for one of our backup types against restic. */
export function targetsFor(ours: ToolResult, restic: ToolResult | undefined): TargetCheck[] {
  const o = ours.phases;
  const r = restic?.phases;
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b;
  const atLeast = (value: number | undefined, min: number): boolean | undefined =>
    value === undefined ? undefined : value >= min;
  const atMost = (value: number | undefined, max: number): boolean | undefined =>
    value === undefined ? undefined : value <= max;

  const resticBackupStepMs = r?.full?.steps[1]?.wallMs;
  const full = ratio(r?.full?.wallMs, o.full?.wallMs);
  const fullStrict = ratio(resticBackupStepMs, o.full?.wallMs);
  const stored = ratio(o.full?.bytes, r?.full?.bytes);
  const incr = ratio(o.incr?.bytes, r?.incr?.bytes);
  // Both restores counted until the file is on disk: ours ends with fsync, restic's is followed by `sync`.
  const restore = ratio(r?.restore?.wallMs, o.restore?.wallMs);
  const restoreUnflushed = ratio(r?.restore?.steps[0]?.wallMs, o.restore?.wallMs);
  const peaks = (['full', 'incr', 'restore'] as const).flatMap((p) => (o[p] ? [o[p].peakRssBytes] : []));
  const peak = peaks.length > 0 ? Math.max(...peaks) : undefined;
  return [
    {
      what: 'full backup throughput vs restic (.backup + restic backup)',
      value: full,
      target: '>= 1.5x',
      pass: atLeast(full, 1.5),
    },
    {
      what: 'full backup throughput vs restic backup step alone',
      value: fullStrict,
      target: '>= 1.5x',
      pass: atLeast(fullStrict, 1.5),
    },
    { what: 'stored bytes vs restic', value: stored, target: '<= 1.1x', pass: atMost(stored, 1.1) },
    { what: "incremental bytes vs restic's 2nd snapshot", value: incr, target: '<= 1.0x', pass: atMost(incr, 1.0) },
    {
      what: 'restore throughput vs restic (both until on disk)',
      value: restore,
      target: '>= 1.5x',
      pass: atLeast(restore, 1.5),
    },
    {
      what: 'restore vs restic restore step alone (its file in page cache)',
      value: restoreUnflushed,
      target: 'report',
      pass: undefined,
    },
    {
      what: 'peak memory (MB)',
      value: peak === undefined ? undefined : peak / 1e6,
      target: '< 300',
      pass: peak === undefined ? undefined : peak < MEMORY_LIMIT_BYTES,
    },
  ];
}

export function growthCheck(tool: ToolId, small: GrowthCheck['small'], large: GrowthCheck['large']): GrowthCheck {
  const ratio = small && large ? large.peakRssBytes / small.peakRssBytes : undefined;
  return { tool, small, large, ratio, pass: ratio === undefined ? undefined : ratio <= GROWTH_TOLERANCE };
}

/** The phase tables, the targets per backup type, and the memory growth check, as printable text. */
export function renderReport(tools: ToolResult[], targets: Map<ToolId, TargetCheck[]>, growth: GrowthCheck[]): string {
  const out: string[] = [];
  const titles: Record<Phase, string> = {
    full: 'Full backup',
    incr: 'Incremental (after +1% rows appended, 0.1% rows updated)',
    restore: 'Restore of the latest restore point',
  };
  const bytesHeader: Record<Phase, string> = { full: 'stored MB', incr: 'added MB', restore: 'db MB' };
  for (const phase of ['full', 'incr', 'restore'] as const) {
    out.push('', titles[phase]);
    const rows = tools.map((tool) => {
      const p = tool.phases[phase];
      const error = tool.errors.find((e) => e.phase === phase);
      if (!p) return [tool.label, '-', '-', '-', '-', error ? `FAILED: ${firstLine(error.message)}` : 'n/a'];
      const notes: string[] = [];
      if (p.verification) notes.push(p.verification.ok ? 'verified ok' : 'VERIFY FAILED');
      if (p.steps.length > 1) {
        notes.push(p.steps.map((s) => `${shortCommand(s.command)} ${seconds(s.wallMs)} s`).join(' + '));
      }
      if (p.note) notes.push(p.note);
      return [
        tool.label,
        seconds(p.wallMs),
        (p.dbBytes / 1e6 / (p.wallMs / 1000)).toFixed(1),
        mb(p.bytes),
        mb(p.peakRssBytes),
        notes.join('; '),
      ];
    });
    out.push(table(['tool', 'time s', 'MB/s', bytesHeader[phase], 'peak MB', 'notes'], rows));
  }
  const waits = tools.filter((t) => t.writerWait);
  if (waits.length > 0) {
    out.push('', 'A concurrent writer during one more full backup (a one-row transaction, then 20 ms, over and over)');
    out.push(
      table(
        ['tool', 'backup s', 'transactions', 'longest wait s', 'median wait ms'],
        waits.map((t) => [
          t.label,
          seconds(t.writerWait!.backupMs),
          String(t.writerWait!.transactions),
          seconds(t.writerWait!.longestWaitMs),
          t.writerWait!.medianWaitMs.toFixed(1),
        ]),
      ),
    );
  }
  for (const [id, checks] of targets) {
    const label = tools.find((t) => t.id === id)?.label ?? id;
    out.push('', `Targets: ${label} / restic`);
    out.push(
      table(
        ['ratio', 'value', 'target', 'result'],
        checks.map((c) => [
          c.what,
          c.value === undefined ? '-' : c.what.startsWith('peak') ? c.value.toFixed(0) : `${c.value.toFixed(2)}x`,
          c.target,
          c.target === 'report' ? '' : c.pass === undefined ? 'n/a' : c.pass ? 'PASS' : 'FAIL',
        ]),
      ),
    );
  }
  if (growth.length > 0) {
    out.push('', `Memory growth: peak of our full backup at two database sizes (pass: <= ${GROWTH_TOLERANCE}x)`);
    out.push(
      table(
        ['tool', 'small db MB', 'peak MB', 'large db MB', 'peak MB', 'growth', 'result'],
        growth.map((g) => [
          g.tool,
          g.small ? mb(g.small.dbBytes) : '-',
          g.small ? mb(g.small.peakRssBytes) : '-',
          g.large ? mb(g.large.dbBytes) : '-',
          g.large ? mb(g.large.peakRssBytes) : '-',
          g.ratio === undefined ? '-' : `${g.ratio.toFixed(2)}x`,
          g.pass === undefined ? 'n/a' : g.pass ? 'PASS' : 'FAIL',
        ]),
      ),
    );
  }
  return out.join('\n');
}

export function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

export function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

function shortCommand(command: string): string {
  const parts = command.split(' ');
  const name = parts[0]?.split('/').at(-1) ?? '';
  if (name === 'sqlite3') return 'sqlite3 .backup';
  if (name === 'restic') return `restic ${parts.find((p) => p === 'backup' || p === 'restore') ?? ''}`.trim();
  return name;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? '';
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = (cell: string): boolean => /^-?[\d.]+x?$|^-$/.test(cell);
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i > 0 && numeric(c) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
