// Containers for the deploy test, without Docker or a registry (../shared/TESTING.md, "Containers"): podman
// with runc and a containers.conf of our own, a Docker-compatible socket from `podman system service` for
// docker-compose, and images built from a base made on this machine (debootstrap + the host's node and
// etcd), cached in podman's image store between runs. Anything missing fails loudly, naming it.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ServerProcess, startProcess, tempDir } from './process.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Debian bookworm with Node 20, npm, sqlite3, PostgreSQL 15, Python 3, tini and etcd: every local image's base. */
export const BASE_IMAGE = 'localhost/backupd-base:bookworm';
const BASE_PACKAGES = ['sqlite3', 'postgresql-15', 'python3', 'ca-certificates', 'tini'];
const INSTALL =
  'Install it with: apt-get install -y --no-install-recommends podman runc docker-compose debootstrap (npm test does this when run as root).';

export interface ContainerRuntime {
  /** Environment for podman and docker-compose: CONTAINERS_CONF and DOCKER_HOST. */
  env: NodeJS.ProcessEnv;
  /** Run podman; returns stdout, throws with its stderr. */
  podman(args: string[], options?: { input?: string; cwd?: string }): string;
  close(): Promise<void>;
}

function requireCommand(command: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status !== 0) {
    throw new Error(`the deploy test needs ${command} (Debian package ${pkg}), which is missing. ${INSTALL}`);
  }
}

/** Run a command to completion; throws naming it, with the end of its output, when it fails. */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string; timeoutMs?: number } = {},
): string {
  const result = spawnSync(command, args, {
    env: options.env ?? process.env,
    input: options.input,
    cwd: options.cwd,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: options.timeoutMs ?? 600_000,
  });
  if (result.error) throw new Error(`${command} ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited with ${result.status ?? result.signal}:\n${(result.stderr || result.stdout).slice(-3000)}`,
    );
  }
  return result.stdout;
}

/** podman's API on a socket of its own, for docker-compose; stopped by its PID in close(). */
export async function startContainerRuntime(): Promise<ContainerRuntime> {
  for (const [command, pkg] of [
    ['podman', 'podman'],
    ['runc', 'runc'],
    ['docker-compose', 'docker-compose'],
    ['debootstrap', 'debootstrap'],
    // Without it the compose services cannot find each other by name.
    ['/usr/lib/cni/dnsname', 'golang-github-containernetworking-plugin-dnsname'],
  ] as const) {
    requireCommand(command, pkg);
  }
  const dir = tempDir('podman');
  // podman's defaults fail here: crun cannot use the hybrid cgroups, the default ulimits cannot be set.
  const conf = join(dir.path, 'containers.conf');
  writeFileSync(
    conf,
    '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n',
  );
  const socket = join(dir.path, 'podman.sock');
  const env = { ...process.env, CONTAINERS_CONF: conf, DOCKER_HOST: `unix://${socket}` };
  let service: ServerProcess;
  try {
    service = await startProcess({
      what: 'podman system service (the Docker-compatible API docker-compose talks to)',
      install: INSTALL,
      command: 'podman',
      args: ['system', 'service', '--time=0', `unix://${socket}`],
      port: 0,
      env,
      ready: () => ping(socket),
      timeoutMs: 30_000,
    });
  } catch (error) {
    dir.remove();
    throw error;
  }
  const podman = (args: string[], options: { input?: string; cwd?: string } = {}) =>
    run('podman', args, { env, ...options });
  return {
    env,
    podman,
    close: async () => {
      await service.stop();
      dir.remove();
    },
  };
}

function ping(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

function imageExists(runtime: ContainerRuntime, image: string): boolean {
  return spawnSync('podman', ['image', 'exists', image], { env: runtime.env }).status === 0;
}

/** The Debian mirror apt already uses (the only one reachable here). */
function debianMirror(): string {
  const files = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'].filter((f) => existsSync(f));
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const uri = /^URIs:\s*(\S+)/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\b/m.exec(text)?.[1];
    if (uri && !uri.includes('security')) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/**
 * The local base image, made once and kept in podman's store (a cold machine: about 2 min of debootstrap;
 * then nothing). A lock folder keeps two test runs from making it at once.
 */
export async function ensureBaseImage(runtime: ContainerRuntime, image = BASE_IMAGE): Promise<void> {
  const lock = '/var/tmp/backupd-base-image.lock';
  const deadline = Date.now() + 600_000;
  for (;;) {
    if (imageExists(runtime, image)) return;
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another run holds the lock: wait for its image, or take a lock left by a crashed run (> 10 min old).
      if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > 600_000) rmdirSync(lock);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock} (another run making ${image})`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  const work = tempDir('base-image');
  try {
    if (imageExists(runtime, image)) return;
    const rootfs = join(work.path, 'rootfs');
    run(
      'debootstrap',
      ['--variant=minbase', `--include=${BASE_PACKAGES.join(',')}`, 'bookworm', rootfs, debianMirror()],
      { timeoutMs: 900_000 },
    );
    const node = realPath(process.execPath);
    copyFileSync(node, join(rootfs, 'usr/local/bin/node'));
    run('chmod', ['0755', join(rootfs, 'usr/local/bin/node')]);
    // npm: the image build prunes development packages with it.
    const npmCli = realPath(run('sh', ['-c', 'command -v npm']).trim());
    const npmRoot = join(dirname(npmCli), '..');
    mkdirSync(join(rootfs, 'usr/local/lib/node_modules'), { recursive: true });
    run('cp', ['-a', npmRoot, join(rootfs, 'usr/local/lib/node_modules/npm')]);
    run('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm')]);
    for (const tool of ['etcd', 'etcdctl']) {
      const path = run('sh', ['-c', `command -v ${tool}`]).trim();
      if (!path) throw new Error(`the base image needs ${tool} from the host. ${INSTALL} and etcd-server etcd-client`);
      copyFileSync(path, join(rootfs, 'usr/local/bin', tool));
      run('chmod', ['0755', join(rootfs, 'usr/local/bin', tool)]);
    }
    run('rm', ['-rf', join(rootfs, 'var/cache/apt'), join(rootfs, 'var/lib/apt/lists'), join(rootfs, 'usr/share/doc')]);
    run('bash', ['-o', 'pipefail', '-c', 'tar -C "$1" -c . | podman import -q - "$2"', 'import', rootfs, image], {
      env: runtime.env,
    });
  } finally {
    work.remove();
    rmdirSync(lock);
  }
}

function realPath(path: string): string {
  return run('readlink', ['-f', path]).trim();
}

/** Build an image from a Dockerfile (podman's layer cache makes an unchanged rebuild quick). */
export function buildImage(
  runtime: ContainerRuntime,
  tag: string,
  context: string,
  buildArgs: Record<string, string> = {},
): void {
  const args = ['build', '-q', '--format', 'docker', '-t', tag];
  for (const [k, v] of Object.entries(buildArgs)) args.push('--build-arg', `${k}=${v}`);
  run('podman', [...args, context], { env: runtime.env, timeoutMs: 900_000 });
}

/** The stand-in for motoserver/moto: moto's S3 server from this machine's Python packages. */
export function buildMotoImage(runtime: ContainerRuntime, tag: string): void {
  const source = join(ROOT, 'test/deploy/images/moto');
  const context = tempDir('moto-image');
  try {
    const listing = spawnSync('python3', [join(source, 'collect.py')], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (listing.status !== 0) {
      throw new Error(
        `the S3 destination of the compose cluster needs moto on this machine's Python (pip install "moto[server]"): ${listing.stderr}`,
      );
    }
    const moto = listing.stdout.split('\n').find((f) => /\/moto\/__init__\.py$/.test(f));
    if (!moto) throw new Error('moto is not installed for python3 (pip install "moto[server]")');
    const sitePackages = join(dirname(moto), '..');
    const files = listing.stdout
      .split('\n')
      .filter((f) => f && !relative(sitePackages, f).startsWith('..') && existsSync(f))
      .map((f) => relative(sitePackages, f));
    mkdirSync(join(context.path, 'site-packages'));
    run('tar', ['-C', sitePackages, '-cf', join(context.path, 'files.tar'), '-T', '-'], { input: files.join('\n') });
    run('tar', ['-C', join(context.path, 'site-packages'), '-xf', join(context.path, 'files.tar')]);
    run('rm', [join(context.path, 'files.tar')]);
    copyFileSync(join(source, 'Dockerfile'), join(context.path, 'Dockerfile'));
    buildImage(runtime, tag, context.path, { BASE_IMAGE });
  } finally {
    context.remove();
  }
}

/** docker-compose (1.29) against podman's socket, for one project. */
export function composeRunner(
  runtime: ContainerRuntime,
  project: string,
  env: Record<string, string>,
): (args: string[], options?: { allowFail?: boolean; timeoutMs?: number }) => { code: number; out: string } {
  return (args, options = {}) => {
    const result = spawnSync('docker-compose', ['-p', project, '-f', join(ROOT, 'docker-compose.yml'), ...args], {
      env: { ...runtime.env, ...env, COMPOSE_INTERACTIVE_NO_CLI: '1' },
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      timeout: options.timeoutMs ?? 300_000,
    });
    const out = `${result.stdout ?? ''}${result.stderr ?? ''}`;
    const code = result.status ?? -1;
    if (code !== 0 && !options.allowFail) {
      throw new Error(`docker-compose ${args.join(' ')} exited with ${code}:\n${out.slice(-4000)}`);
    }
    return { code, out: result.stdout ?? '' };
  };
}
