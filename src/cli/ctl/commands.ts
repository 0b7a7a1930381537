// Every backupctl command, in the order `backupctl --help` lists them. Commands of two words share their
// first word as a group (`task`, `run`, `backup`, `backups`).

import type { Command } from './command.js';
import { RESTORE_COMMANDS } from './restore-commands.js';
import { RUN_COMMANDS } from './run-commands.js';
import { TASK_COMMANDS } from './task-commands.js';

export const COMMANDS: readonly Command[] = [...TASK_COMMANDS, ...RUN_COMMANDS, ...RESTORE_COMMANDS];

/** The first words of the two-word commands. */
export const GROUPS: ReadonlySet<string> = new Set(
  COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!),
);

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** The commands of a group, e.g. every `task ...`. */
export function groupCommands(group: string): Command[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${group} `));
}
