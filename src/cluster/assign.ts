// Choosing each unit's responsible node (DESIGN.md, "Cluster"): the preferred node if alive and able to
// reach the database; else the current one if still alive (stickiness keeps incremental chains); else the
// least loaded node that can reach the database, ties broken by a stable hash. `pinToPreferredNode`
// disables failover. Pure: the leader (leader.ts) feeds it members, units and current assignments.

import { createHash } from 'node:crypto';

export interface MemberReach {
  node: string;
  /** Every `<source>/<db>` the node can read, including a server snapshot's unit (SERVER_UNIT). */
  databases: ReadonlySet<string>;
}

export interface UnitToAssign {
  task: string;
  database: string;
  preferredNode?: string;
  pinToPreferredNode: boolean;
  /** The node it has now, if any (alive or not). */
  current?: string;
}

export interface Choice {
  task: string;
  database: string;
  /** Empty when no live node can take it. */
  node: string;
  reason: string;
}

/**
 * Assign every unit. Units whose current node stays are placed first, so the load a moving unit sees is the
 * load after everything that does not move.
 */
export function assignUnits(units: readonly UnitToAssign[], members: readonly MemberReach[]): Choice[] {
  const alive = new Map(members.map((m) => [m.node, m]));
  const load = new Map(members.map((m) => [m.node, 0]));
  const reaches = (node: string | undefined, database: string) =>
    node !== undefined && alive.get(node)?.databases.has(database) === true;

  const choices = new Map<UnitToAssign, Choice>();
  const take = (unit: UnitToAssign, node: string, reason: string) => {
    choices.set(unit, { task: unit.task, database: unit.database, node, reason });
    if (node) load.set(node, (load.get(node) ?? 0) + 1);
  };
  const moving: UnitToAssign[] = [];
  for (const unit of units) {
    const preferred = unit.preferredNode;
    if (preferred !== undefined && reaches(preferred, unit.database)) {
      take(unit, preferred, unit.pinToPreferredNode ? 'pinned to its preferred node' : 'its preferred node');
    } else if (unit.pinToPreferredNode) {
      take(unit, '', `pinned to ${preferred}, which is down or cannot reach ${unit.database}`);
    } else if (reaches(unit.current, unit.database)) {
      take(unit, unit.current!, stayReason(unit));
    } else {
      moving.push(unit);
    }
  }
  for (const unit of moving) {
    let best: string | undefined;
    for (const member of members) {
      if (!member.databases.has(unit.database)) continue;
      if (best === undefined || better(member.node, best, unit, load)) best = member.node;
    }
    if (best === undefined) take(unit, '', `no live node can reach ${unit.database}`);
    else take(unit, best, moveReason(unit, alive.has(unit.current ?? '')));
  }
  return units.map((u) => choices.get(u)!);
}

function stayReason(unit: UnitToAssign): string {
  return unit.preferredNode
    ? `its current node (preferred node ${unit.preferredNode} is down or cannot reach it); keeps its chain`
    : 'its current node; keeps its chain';
}

function moveReason(unit: UnitToAssign, currentAlive: boolean): string {
  if (unit.current === undefined || unit.current === '') return 'least loaded node that can reach it';
  return currentAlive
    ? `least loaded node that can reach it (${unit.current} can no longer reach it)`
    : `least loaded node that can reach it (${unit.current} is gone)`;
}

function better(candidate: string, best: string, unit: UnitToAssign, load: Map<string, number>): boolean {
  const a = load.get(candidate) ?? 0;
  const b = load.get(best) ?? 0;
  if (a !== b) return a < b;
  return tieBreak(unit, candidate) < tieBreak(unit, best);
}

/** A stable pseudo-random order of nodes per unit, so equal loads do not all pick the same node. */
function tieBreak(unit: UnitToAssign, node: string): string {
  return createHash('sha1').update(`${unit.task}/${unit.database}/${node}`).digest('hex');
}
