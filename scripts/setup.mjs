#!/usr/bin/env node
// Makes a fresh clone ready to run: checks Node, installs npm dependencies when node_modules is missing or
// older than package-lock.json, checks the native modules load, and for tests/benchmarks installs the
// system tools they need (as root, from Debian's packages). Plain JavaScript: it runs before any install.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const forTests = process.argv.includes('--for-tests');
const forBench = process.argv.includes('--for-bench');
const forCluster = process.argv.includes('--for-cluster');

function fail(message) {
  process.stderr.write(`setup: ${message}\n`);
  process.exit(1);
}

function run(command, args, what) {
  process.stderr.write(`setup: ${what}: ${command} ${args.join(' ')}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) fail(`${what} failed (${command} exited with ${result.status ?? result.signal})`);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19))
  fail(`Node ${process.versions.node} is too old: backupd needs Node >= 20.19`);

// npm dependencies: install when the lock file changed since the last install.
const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.backupd-installed');
const lockHash = () => createHash('sha256').update(readFileSync(lock)).digest('hex');
const installed = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
if (installed !== lockHash()) {
  // `npm install`, not `npm ci`: the registry mirror here lacks some platform builds of optional
  // dependencies (Biome's), which `npm ci` reports as a lock mismatch; install follows the lock all the same.
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], 'installing npm dependencies');
  writeFileSync(stamp, `${lockHash()}\n`);
}
const loads = (native) =>
  spawnSync(process.execPath, ['-e', `require(${JSON.stringify(native)})`], { cwd: root, encoding: 'utf8' });
for (const native of ['better-sqlite3', 'zstd-napi']) {
  if (loads(native).status !== 0) run('npm', ['rebuild', native], `building the native module ${native}`);
}
// BLAKE3 (chunk ids) comes prebuilt, as an optional package per platform: nothing to build here.
const blake = loads('@napi-rs/blake-hash');
if (blake.status !== 0) {
  fail(
    `@napi-rs/blake-hash has no build for ${process.platform}-${process.arch} here (${blake.stderr.trim().split('\n')[0]}); ` +
      'remove node_modules and run npm install again',
  );
}

function hasCommand(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

function aptInstall(packages, why, extraArgs = []) {
  const missing = packages.filter(([command]) => !hasCommand(command));
  if (missing.length === 0) return;
  const names = missing.map(([, pkg]) => pkg);
  if (process.getuid?.() !== 0) {
    fail(`${why} need ${names.join(', ')}; install them with: sudo apt-get install -y ${names.join(' ')}`);
  }
  // The package lists may be missing or stale on a fresh machine.
  run('apt-get', ['update', '-qq'], 'updating the package lists');
  run('apt-get', ['install', '-y', '-qq', ...extraArgs, ...names], `installing ${names.join(', ')} for ${why}`);
}

if (forTests) {
  aptInstall(
    [
      ['openssl', 'openssl'],
      ['etcd', 'etcd-server'],
      ['etcdctl', 'etcd-client'],
    ],
    'the tests',
  );
  // The deploy test (test/deploy/compose.test.ts) builds the image and runs docker-compose.yml on podman
  // (no Docker daemon here): runc (crun cannot use these hosts' cgroups), docker-compose 1.29 against
  // podman's socket, debootstrap for the local base image, and the CNI dnsname plugin so that the services
  // find each other by name. Without recommends: the test sets its own containers.conf for these.
  aptInstall(
    [
      ['podman', 'podman'],
      ['runc', 'runc'],
      ['docker-compose', 'docker-compose'],
      ['debootstrap', 'debootstrap'],
      ['/usr/lib/cni/dnsname', 'golang-github-containernetworking-plugin-dnsname'],
    ],
    'the deploy test',
    ['--no-install-recommends'],
  );
  // The PostgreSQL source's tests start their own servers with the server binaries (initdb, postgres).
  const pgBin = spawnSync('sh', ['-c', 'ls /usr/lib/postgresql/*/bin/initdb'], { stdio: 'ignore' });
  if (pgBin.status !== 0) aptInstall([['initdb-missing', 'postgresql']], 'the PostgreSQL tests');
  // The MariaDB source's tests start their own mariadbd (no system service) and use its client tools.
  const mariadbd = spawnSync('test', ['-x', '/usr/sbin/mariadbd'], { stdio: 'ignore' });
  aptInstall(
    [
      [mariadbd.status === 0 ? 'mariadb-install-db' : 'mariadbd-missing', 'mariadb-server'],
      ['mariadb', 'mariadb-client'],
      ['mariadb-dump', 'mariadb-client'],
      ['mariadb-backup', 'mariadb-backup'],
    ],
    'the MariaDB tests',
  );
  const moto = spawnSync('python3', ['-c', 'import moto.server'], { stdio: 'ignore' });
  if (moto.status !== 0) {
    fail(
      'the S3 and Glacier tests need Python 3 with moto (python3 -m moto.server); install it with: pip install "moto[server]"',
    );
  }
}
if (forCluster) {
  // `npm run cluster` runs a local etcd beside its three agents.
  aptInstall([['etcd', 'etcd-server']], 'npm run cluster');
}
if (forBench) {
  aptInstall(
    [
      ['restic', 'restic'],
      ['zstd', 'zstd'],
      ['sqlite3', 'sqlite3'],
      ['/usr/bin/time', 'time'],
      // The PostgreSQL bench's reference for physical backups (bench/pgbackrest.ts).
      ['pgbackrest', 'pgbackrest'],
    ],
    'the benchmarks',
  );
}
// Keep the linter from seeing an old build.
if (existsSync(join(root, 'dist')) && statSync(join(root, 'dist')).isDirectory())
  execFileSync('rm', ['-rf', join(root, 'dist')]);
