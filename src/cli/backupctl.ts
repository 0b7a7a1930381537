#!/usr/bin/env node
// backupctl, the operator CLI of backupd. All logic lives in ./ctl/ (run() in ctl/main.ts is what tests
// call); this file only hands it the process and sets the exit code (see `backupctl --help` for them).

import { run } from './ctl/main.js';

// A reader that stops early (`backupctl runs | head`) closes the pipe: the rest of the output has nowhere to
// go, and that is no failure of backupctl. Stop at once and quietly, as Unix tools do on SIGPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
}

run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // run() maps every error to an exit code itself; reaching this is a bug in backupctl.
    process.stderr.write(
      `backupctl: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
