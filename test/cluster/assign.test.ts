// assignUnits, rule by rule (DESIGN.md, "Cluster"): preferred node, pinning, stickiness to the current node,
// least loaded failover, reachability of the database, deterministic tie breaks, and load counted in order.

import { describe, expect, it } from 'vitest';
import { assignUnits, type Choice, type MemberReach, type UnitToAssign } from '../../src/cluster/assign.js';

const DB = 'local/app.db';

/** A live member that can reach the given databases (DB by default). */
function member(node: string, databases: readonly string[] = [DB]): MemberReach {
  return { node, databases: new Set(databases) };
}

function unit(fields: Partial<UnitToAssign> = {}): UnitToAssign {
  return { task: 'nightly', database: DB, pinToPreferredNode: false, ...fields };
}

/** `count` units of one task over distinct databases that every member in `members(...)` can reach. */
function manyUnits(count: number, fields: Partial<UnitToAssign> = {}): UnitToAssign[] {
  return Array.from({ length: count }, (_, i) => unit({ database: `local/db${i}.db`, ...fields }));
}

function reachingAll(nodes: readonly string[], units: readonly UnitToAssign[]): MemberReach[] {
  const databases = units.map((u) => u.database);
  return nodes.map((node) => member(node, databases));
}

function loadOf(choices: readonly Choice[]): Map<string, number> {
  const load = new Map<string, number>();
  for (const c of choices) load.set(c.node, (load.get(c.node) ?? 0) + 1);
  return load;
}

function only(choices: readonly Choice[]): Choice {
  expect(choices).toHaveLength(1);
  return choices[0]!;
}

describe('assignUnits: one unit', () => {
  it('gives a unit to its preferred node when that node is alive and reaches the database', () => {
    const choice = only(assignUnits([unit({ preferredNode: 'b', current: 'a' })], [member('a'), member('b')]));
    expect(choice).toMatchObject({ task: 'nightly', database: DB, node: 'b' });
    expect(choice.reason).toMatch(/preferred/);
  });

  it('says a pinned unit on its preferred node is pinned', () => {
    const choice = only(
      assignUnits([unit({ preferredNode: 'b', pinToPreferredNode: true })], [member('a'), member('b')]),
    );
    expect(choice.node).toBe('b');
    expect(choice.reason).toMatch(/pinned/);
  });

  it('leaves a pinned unit without a node when its preferred node is down, naming that node', () => {
    const choice = only(
      assignUnits([unit({ preferredNode: 'b', pinToPreferredNode: true, current: 'a' })], [member('a'), member('c')]),
    );
    expect(choice.node).toBe('');
    expect(choice.reason).toContain('b');
    expect(choice.reason).toMatch(/pinned/);
  });

  it('leaves a pinned unit without a node when its preferred node is alive but cannot reach the database', () => {
    const choice = only(
      assignUnits(
        [unit({ preferredNode: 'b', pinToPreferredNode: true })],
        [member('a'), member('b', ['local/other.db'])],
      ),
    );
    expect(choice.node).toBe('');
    expect(choice.reason).toContain('b');
  });

  it('keeps an unpinned unit on its live current node when its preferred node is down', () => {
    const choice = only(assignUnits([unit({ preferredNode: 'b', current: 'a' })], [member('a'), member('c')]));
    expect(choice.node).toBe('a');
    expect(choice.reason).toMatch(/current/);
    expect(choice.reason).toMatch(/chain/);
  });

  it('keeps a unit without a preferred node on its live current node, even when another node is less loaded', () => {
    const units = [unit({ current: 'a' }), ...manyUnits(5, { current: 'a' })];
    const choices = assignUnits(units, reachingAll(['a', 'b'], units));
    expect(choices.every((c) => c.node === 'a')).toBe(true);
    expect(choices[0]!.reason).toMatch(/chain/);
  });

  it('moves a unit whose current node is gone to the least loaded node that reaches it, saying the current is gone', () => {
    // b already holds two units that stay; c holds none, so the orphan goes to c.
    const staying = manyUnits(2, { current: 'b' });
    const orphan = unit({ database: 'local/orphan.db', current: 'dead' });
    const units = [...staying, orphan];
    const choices = assignUnits(units, reachingAll(['b', 'c'], units));
    const moved = choices[2]!;
    expect(moved.node).toBe('c');
    expect(moved.reason).toMatch(/least loaded/);
    expect(moved.reason).toContain('dead');
    expect(moved.reason).toMatch(/gone/);
  });

  it('moves a unit whose preferred and current nodes are both down', () => {
    const choice = only(assignUnits([unit({ preferredNode: 'p', current: 'q' })], [member('a')]));
    expect(choice.node).toBe('a');
    expect(choice.reason).toMatch(/gone/);
  });

  it('gives a new unit (no current node) to the least loaded node', () => {
    const choice = only(assignUnits([unit()], [member('a')]));
    expect(choice.node).toBe('a');
    expect(choice.reason).toMatch(/least loaded/);
  });
});

describe('assignUnits: reaching the database', () => {
  it('never chooses a preferred node that cannot reach the database', () => {
    const choice = only(assignUnits([unit({ preferredNode: 'b' })], [member('a'), member('b', ['local/other.db'])]));
    expect(choice.node).toBe('a');
  });

  it('moves a unit off a live current node that can no longer reach the database, saying so', () => {
    const choice = only(assignUnits([unit({ current: 'a' })], [member('a', ['local/other.db']), member('b')]));
    expect(choice.node).toBe('b');
    expect(choice.reason).toMatch(/can no longer reach/);
  });

  it('prefers a loaded node that reaches the database over an idle one that does not', () => {
    const busy = manyUnits(10, { current: 'busy' });
    const orphan = unit({ current: 'dead' });
    const units = [...busy, orphan];
    const members = [
      member(
        'busy',
        units.map((u) => u.database),
      ),
      member(
        'idle',
        busy.map((u) => u.database),
      ),
    ];
    const choices = assignUnits(units, members);
    expect(choices[10]!.node).toBe('busy');
  });

  it('never places a unit on a node lacking its database, whatever the mix', () => {
    const units = manyUnits(60);
    // Each node reaches a different two thirds of the databases.
    const members = ['a', 'b', 'c'].map((node, n) =>
      member(
        node,
        units.filter((_, i) => i % 3 !== n).map((u) => u.database),
      ),
    );
    const byNode = new Map(members.map((m) => [m.node, m]));
    for (const choice of assignUnits(units, members)) {
      expect(byNode.get(choice.node)?.databases.has(choice.database)).toBe(true);
    }
  });

  it('leaves a unit without a node, with a reason, when no live node reaches its database', () => {
    const choice = only(assignUnits([unit({ current: 'a' })], [member('a', []), member('b', ['local/other.db'])]));
    expect(choice.node).toBe('');
    expect(choice.reason).toContain(DB);
  });

  it('leaves a unit without a node when there are no members at all', () => {
    const choice = only(assignUnits([unit({ current: 'a' })], []));
    expect(choice.node).toBe('');
    expect(choice.reason).not.toBe('');
  });
});

describe('assignUnits: load', () => {
  it('spreads 12 new units over 3 equal members, 4 each', () => {
    const units = manyUnits(12);
    const load = loadOf(assignUnits(units, reachingAll(['a', 'b', 'c'], units)));
    expect(Object.fromEntries(load)).toEqual({ a: 4, b: 4, c: 4 });
  });

  it('does not move any unit with a live current node when a fourth member joins', () => {
    const units = manyUnits(12);
    const first = assignUnits(units, reachingAll(['a', 'b', 'c'], units));
    const assigned = units.map((u, i) => ({ ...u, current: first[i]!.node }));
    const second = assignUnits(assigned, reachingAll(['a', 'b', 'c', 'd'], assigned));
    expect(second.map((c) => c.node)).toEqual(first.map((c) => c.node));
    expect(loadOf(second).get('d')).toBeUndefined();
  });

  it('gives new units to a joining member once the others are loaded', () => {
    const old = manyUnits(9).map((u, i) => ({ ...u, current: ['a', 'b', 'c'][i % 3]! }));
    const fresh = Array.from({ length: 3 }, (_, i) => unit({ database: `local/new${i}.db` }));
    const units = [...old, ...fresh];
    const choices = assignUnits(units, reachingAll(['a', 'b', 'c', 'd'], units));
    expect(choices.slice(9).map((c) => c.node)).toEqual(['d', 'd', 'd']);
  });

  it('counts the units that stay into the load before placing the ones that move', () => {
    // A holds 3 units; C died with 3 more. The orphans come first in the input, so only a leader that places
    // the staying units first sees A as loaded.
    const orphans = manyUnits(3, { current: 'c' }).map((u, i) => ({ ...u, database: `local/orphan${i}.db` }));
    const staying = manyUnits(3, { current: 'a' });
    const units = [...orphans, ...staying];
    const choices = assignUnits(units, reachingAll(['a', 'b'], units));
    expect(choices.slice(0, 3).map((c) => c.node)).toEqual(['b', 'b', 'b']);
    expect(choices.slice(3).map((c) => c.node)).toEqual(['a', 'a', 'a']);
  });

  it('counts units on their preferred node into the load too', () => {
    const preferred = manyUnits(2, { preferredNode: 'a' });
    const orphan = unit({ database: 'local/orphan.db', current: 'gone' });
    const units = [orphan, ...preferred];
    const choices = assignUnits(units, reachingAll(['a', 'b'], units));
    expect(choices[0]!.node).toBe('b');
  });

  it('returns one choice per unit, in the order of the input', () => {
    const units = [unit({ current: 'gone' }), ...manyUnits(4, { current: 'a' }), unit({ task: 'weekly' })];
    const choices = assignUnits(units, reachingAll(['a', 'b'], units));
    expect(choices.map((c) => [c.task, c.database])).toEqual(units.map((u) => [u.task, u.database]));
  });
});

describe('assignUnits: ties', () => {
  it('breaks ties the same way every time, whatever the order of members', () => {
    const units = manyUnits(31);
    const members = reachingAll(['a', 'b', 'c', 'd'], units);
    const first = assignUnits(units, members);
    expect(assignUnits(units, members)).toEqual(first);
    expect(assignUnits(units, [...members].reverse())).toEqual(first);
  });

  it('does not send every tied unit to the same node', () => {
    // Each unit alone against equally idle members: only the tie break decides.
    const members = reachingAll(['a', 'b', 'c'], manyUnits(30));
    const picked = new Set(manyUnits(30).map((u) => only(assignUnits([u], members)).node));
    expect(picked.size).toBeGreaterThan(1);
  });
});

describe('assignUnits: scale', () => {
  it('places 10,000 units over 5 members, balanced within one', () => {
    const units = manyUnits(10_000);
    const members = reachingAll(['n1', 'n2', 'n3', 'n4', 'n5'], units);
    const choices = assignUnits(units, members);
    expect(choices).toHaveLength(10_000);
    const counts = [...loadOf(choices).values()];
    expect(counts).toHaveLength(5);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });

  it('rebalances the 2,000 units of a lost member over the other 4, within one', () => {
    const units = manyUnits(10_000);
    const nodes = ['n1', 'n2', 'n3', 'n4', 'n5'];
    const first = assignUnits(units, reachingAll(nodes, units));
    const assigned = units.map((u, i) => ({ ...u, current: first[i]!.node }));
    const second = assignUnits(assigned, reachingAll(nodes.slice(0, 4), units));
    // Nothing that was on a surviving member moved.
    for (const [i, choice] of second.entries()) {
      if (first[i]!.node !== 'n5') expect(choice.node).toBe(first[i]!.node);
    }
    const counts = [...loadOf(second).values()];
    expect(counts).toHaveLength(4);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });
});
