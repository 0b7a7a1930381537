// The help texts of backupctl: the overview with every command and the exit codes, a group's commands,
// and one command's flags.

import { type FlagSpecs, GLOBAL_FLAGS } from './args.js';
import type { Command } from './command.js';
import { COMMANDS, groupCommands } from './commands.js';
import { EXIT_CODES_HELP } from './errors.js';

function flagLines(flags: FlagSpecs): string[] {
  const rows = Object.entries(flags).map(([name, spec]) => {
    const short = spec.short ? `-${spec.short}, ` : '';
    const usage = `${short}--${name}${spec.value ? ` ${spec.value}` : ''}${spec.multiple ? ' ...' : ''}`;
    return [usage, spec.help] as const;
  });
  const width = Math.max(0, ...rows.map(([usage]) => usage.length));
  return rows.map(([usage, help]) => `  ${usage.padEnd(width)}  ${help}`);
}

function usageLine(command: Command): string {
  return `backupctl ${command.name}${command.args ? ` ${command.args}` : ''}${Object.keys(command.flags).length > 0 ? ' [flags]' : ''}`;
}

function commandList(commands: readonly Command[]): string[] {
  const width = Math.max(...commands.map((c) => c.name.length + (c.args ? c.args.length + 1 : 0)));
  return commands.map((c) => `  ${`${c.name}${c.args ? ` ${c.args}` : ''}`.padEnd(width)}  ${c.summary}`);
}

export function generalHelp(): string {
  return [
    'backupctl: operate a backupd cluster over gRPC.',
    '',
    'Usage: backupctl [global flags] <command> [args] [flags]',
    '',
    'Commands:',
    ...commandList(COMMANDS),
    '',
    'Global flags (before or after the command):',
    ...flagLines(GLOBAL_FLAGS),
    '',
    'Secrets: the token and encryption keys are never printed, --json included. Keys are read only from',
    'a file (--key-file) or an environment variable (--key-env), never from the command line.',
    '',
    EXIT_CODES_HELP,
    '',
    'Run `backupctl <command> --help` for the flags of a command.',
  ].join('\n');
}

export function groupHelp(group: string): string {
  return [
    `Usage: backupctl ${group} <command> [args] [flags]`,
    '',
    'Commands:',
    ...commandList(groupCommands(group)),
  ].join('\n');
}

export function commandHelp(command: Command): string {
  const own = Object.keys(command.flags).length > 0 ? ['', 'Flags:', ...flagLines(command.flags)] : [];
  return [
    `Usage: ${usageLine(command)}`,
    '',
    command.summary,
    ...own,
    '',
    'Global flags: --server HOST:PORT --token TOKEN --tls-ca FILE --tls-cert FILE --tls-key FILE --json',
    '--timeout SECONDS (see `backupctl --help`, also for the exit codes)',
    ...(command.notes ? ['', command.notes] : []),
  ].join('\n');
}
