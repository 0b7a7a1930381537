// One psql session held open for statements that must share a connection: a snapshot read from the data
// directory runs pg_backup_start, its temporary replication slot and pg_backup_stop on one connection
// (postgres-files.ts). Each statement's output ends at a marker line psql echoes after it; with
// ON_ERROR_STOP a failed statement ends psql, and its stderr becomes the error.

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BackupdError } from '../errors.js';
import { type PgTools, toolError } from './postgres-tools.js';

const STDERR_KEEP = 8 << 10;

export class PgSession {
  private readonly child: ChildProcess;
  private readonly marker = `__backupd_${randomBytes(8).toString('hex')}__`;
  private stdout = '';
  private stderr = '';
  private exited: BackupdError | undefined;
  private waiting: { resolve: (out: string) => void; reject: (error: BackupdError) => void } | undefined;

  /** A session on `database`; nothing is sent until query(). */
  constructor(tools: PgTools, database: string) {
    this.child = tools.spawn('psql', ['-X', '-w', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database]);
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (text: string) => {
      this.stdout += text;
      this.settle();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-STDERR_KEEP);
    });
    this.child.stdin!.on('error', () => {}); // psql gone: its exit below reports why
    // psql's stderr classified as any tool's: PERMISSION_DENIED for a role that may not start a backup, ...
    const gone = (code: number | null, signal: NodeJS.Signals | null) => {
      this.exited ??= toolError('psql', "the snapshot's psql session", this.stderr, code, signal, tools);
      this.settle();
    };
    this.child.on('error', (error) => {
      this.stderr += error.message;
      gone(null, null);
    });
    this.child.on('close', (code, signal) => gone(code, signal));
  }

  /** Run `sql` (one or more statements) and return what it printed (unaligned, tuples only). */
  query(sql: string): Promise<string> {
    if (this.waiting) throw new BackupdError('INTERNAL', 'a psql session runs one query at a time');
    if (this.exited) return Promise.reject(this.exited);
    return new Promise<string>((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.child.stdin!.write(`${sql}\n\\echo ${this.marker}\n`);
    });
  }

  /** End the session (its temporary replication slot goes with it); safe to call twice. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const closed = new Promise<void>((resolve) => this.child.once('close', () => resolve()));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await closed;
    clearTimeout(timer);
  }

  private settle(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    const end = this.stdout.indexOf(`${this.marker}\n`);
    if (end >= 0) {
      const out = this.stdout.slice(0, end);
      this.stdout = this.stdout.slice(end + this.marker.length + 1);
      this.waiting = undefined;
      waiting.resolve(out);
    } else if (this.exited) {
      this.waiting = undefined;
      waiting.reject(this.exited);
    }
  }
}
