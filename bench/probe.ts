// Where one benchmark step spends CPU, sampled from /proc while it runs: this process's threads (by id and
// name, so the pipeline's workers show apart from the main thread), the programs it started (e.g.
// pg_basebackup), the peak resident memory of this process and its children, and the CPU of a server's
// whole process tree (its postmaster and every backend, walsender and archiver child). Linux only.

import { readdirSync, readFileSync } from 'node:fs';

const POLL_MS = 50;
/** USER_HZ: /proc's CPU times are in these ticks (100 on every Linux this runs on). */
const TICKS_PER_S = 100;

interface Times {
  /** utime + stime of the process or thread itself, in ticks. */
  own: number;
  /** cutime + cstime: of its children that exited and were waited for, in ticks. */
  children: number;
  name: string;
}

export interface ThreadCpu {
  tid: number;
  name: string;
  cpuS: number;
}

export interface ProbeResult {
  /** CPU seconds of this process's threads during the step, busiest first (threads under 0.05 s left out). */
  threads: ThreadCpu[];
  /** CPU seconds of this process, all threads. */
  selfCpuS: number;
  /** CPU seconds of the programs this process started during the step (live ones and exited ones). */
  childrenCpuS: number;
  /** Largest sum of resident memory of this process and its children seen. */
  peakRssBytes: number;
  /** The same sum at the start of the step (what this process held before it). */
  startRssBytes: number;
  /** CPU seconds of the server's process tree, when a server pid was given. */
  serverCpuS?: number;
}

/** Start sampling; `stop()` ends it and returns what the step used. */
export function probe(serverPid?: number): { stop(): ProbeResult } {
  const self = process.pid;
  const threadsAtStart = threadTimes();
  const selfAtStart = times(`/proc/${self}/stat`);
  const childrenAtStart = sumOwn(descendants(self));
  const serverAtStart = serverPid === undefined ? undefined : treeTimes(serverPid);
  const lastThreads = new Map<number, Times>(threadsAtStart);
  let peakRssBytes = 0;
  const treeRss = (kids: number[]) => [self, ...kids].reduce((sum, pid) => sum + rss(pid), 0);
  const startRssBytes = treeRss(descendants(self));
  const sample = (): void => {
    for (const [tid, t] of threadTimes()) lastThreads.set(tid, t);
    peakRssBytes = Math.max(peakRssBytes, treeRss(descendants(self)));
  };
  sample();
  const timer = setInterval(sample, POLL_MS);
  return {
    stop(): ProbeResult {
      clearInterval(timer);
      sample();
      const selfNow = times(`/proc/${self}/stat`);
      const selfCpuS = ((selfNow?.own ?? 0) - (selfAtStart?.own ?? 0)) / TICKS_PER_S;
      const all = [...lastThreads].map(([tid, t]) => ({
        tid,
        name: t.name,
        cpuS: (t.own - (threadsAtStart.get(tid)?.own ?? 0)) / TICKS_PER_S,
      }));
      // Threads that ended between two samples took their last CPU with them: the rest of the process's.
      const unseen = selfCpuS - all.reduce((sum, t) => sum + t.cpuS, 0);
      const threads = [...all, { tid: 0, name: 'ended-unsampled', cpuS: unseen }]
        .filter((t) => t.cpuS >= 0.05)
        .sort((a, b) => b.cpuS - a.cpuS);
      // Children that exited were waited for: all their time (their own children's too) is in our
      // cutime/cstime; the ones still running count by what they used so far.
      const exited = (selfNow?.children ?? 0) - (selfAtStart?.children ?? 0);
      const live = sumOwn(descendants(self));
      const result: ProbeResult = {
        threads,
        selfCpuS,
        childrenCpuS: (exited + Math.max(0, live - childrenAtStart)) / TICKS_PER_S,
        peakRssBytes,
        startRssBytes,
      };
      if (serverPid !== undefined && serverAtStart !== undefined) {
        result.serverCpuS = (treeTimes(serverPid) - serverAtStart) / TICKS_PER_S;
      }
      return result;
    },
  };
}

/** One line for a report: the busiest threads and the rest. */
export function describeThreads(threads: ThreadCpu[], top = 6): string {
  return threads
    .slice(0, top)
    .map((t) => `${t.tid === process.pid ? 'main' : t.tid === 0 ? t.name : `${t.name}[${t.tid}]`} ${t.cpuS.toFixed(2)}`)
    .join(', ');
}

/**
 * The CPU ticks of a server's process tree: its root's own and waited-for children's, plus every live
 * descendant's own (a backend that exited during the step is in the root's children's time).
 */
function treeTimes(root: number): number {
  const rootTimes = times(`/proc/${root}/stat`);
  return (rootTimes?.own ?? 0) + (rootTimes?.children ?? 0) + sumOwn(descendants(root));
}

function threadTimes(): Map<number, Times> {
  const result = new Map<number, Times>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return result; // not Linux: no per-thread figures
  }
  for (const tid of tids) {
    const t = times(`/proc/self/task/${tid}/stat`);
    if (t) result.set(Number(tid), t);
  }
  return result;
}

function times(statPath: string): Times | undefined {
  try {
    const stat = readFileSync(statPath, 'utf8');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    // Fields after "(comm) ": state is [0], utime [11], stime [12], cutime [13], cstime [14].
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]), name };
  } catch {
    return undefined; // exited between listing and reading
  }
}

function sumOwn(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (times(`/proc/${pid}/stat`)?.own ?? 0), 0);
}

function rss(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0; // exited while sampling
  }
}

/** Every process below `root`, from the parent links in /proc. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    let ppid: number;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      continue; // exited between readdir and read
    }
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const found: number[] = [];
  const queue = [root];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}
