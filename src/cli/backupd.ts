#!/usr/bin/env node
// `backupd`: the agent. Reads its config (file, then BACKUPD_* environment variables, then flags), starts
// the agent and its gRPC API, and stops cleanly on SIGTERM/SIGINT: runs in progress are interrupted without
// publishing anything and run again at the next start; the store is closed with everything flushed.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Agent, VERSION } from '../agent/agent.js';
import { ENV_OVERRIDES, loadAgentConfig, redactConfig } from '../agent/config.js';
import { DataDirLock } from '../agent/data-dir.js';
import { serveMetrics } from '../agent/metrics.js';
import { grpcPeers } from '../api/forward.js';
import { startApiServer } from '../api/server.js';
import { messageOf, ValidationError } from '../errors.js';
import { sourceEngines } from '../sources/registry.js';

const USAGE = `usage: backupd [--config FILE] [--node NAME] [--listen HOST:PORT] [--data-dir DIR]
               [--log-level LEVEL] [--metrics-listen HOST:PORT] [--etcd URL[,URL...]]
               [--advertise HOST:PORT]

Starts one backupd agent. With no etcd configured it runs alone on the embedded default store in its data
dir; with etcd endpoints (--etcd, BACKUPD_ETCD_ENDPOINTS or the config's etcd.endpoints) it joins the
cluster of that etcd. The config file is JSON (docs/AGENT.md); environment variables override it, flags override both:
${Object.entries(ENV_OVERRIDES)
  .map(([variable, field]) => `  ${variable.padEnd(24)} ${field}`)
  .join('\n')}
  BACKUPD_ETCD_ENDPOINTS   etcd.endpoints (comma-separated)
  BACKUPD_CONFIG           --config
`;

async function main(): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string' },
        node: { type: 'string' },
        listen: { type: 'string' },
        'data-dir': { type: 'string' },
        'log-level': { type: 'string' },
        'metrics-listen': { type: 'string' },
        etcd: { type: 'string' },
        advertise: { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`backupd: ${messageOf(error)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`backupd ${VERSION}\n`);
    return 0;
  }
  const str = (v: string | boolean | undefined) => (typeof v === 'string' ? v : undefined);
  let config: ReturnType<typeof loadAgentConfig>;
  try {
    config = loadAgentConfig(
      {
        file: str(values.config) ?? process.env.BACKUPD_CONFIG,
        env: typeof values.etcd === 'string' ? { ...process.env, BACKUPD_ETCD_ENDPOINTS: values.etcd } : process.env,
        flags: {
          node: str(values.node),
          listen: str(values.listen),
          dataDir: str(values['data-dir']),
          logLevel: str(values['log-level']),
          metricsListen: str(values['metrics-listen']),
          advertise: str(values.advertise),
        },
      },
      sourceEngines,
    );
  } catch (error) {
    if (error instanceof ValidationError) {
      process.stderr.write(`backupd: the config has ${error.problems.length} problem(s):\n`);
      for (const p of error.problems) process.stderr.write(`  ${p.path}: ${p.message}\n`);
    } else {
      process.stderr.write(`backupd: ${messageOf(error)}\n`);
    }
    return 2;
  }

  const logger = pino({ level: config.logLevel, base: { service: 'backupd' } });
  logger.info({ config: redactConfig(config) }, 'starting');
  // Everything the agent creates is its owner's alone (0600 files, 0700 folders): the data dir holds task
  // keys, destination credentials and staged backups. Set for the process, like PostgreSQL's postmaster,
  // so no file of any layer (packs, manifests, pending folders, caches, SQLite's side files) is missed.
  process.umask(0o077);
  let lock: DataDirLock;
  try {
    lock = DataDirLock.acquire(config.dataDir);
  } catch (error) {
    logger.fatal({ dataDir: config.dataDir, error: messageOf(error) }, 'cannot take the data dir');
    process.stderr.write(`backupd: ${messageOf(error)}\n`);
    return 1;
  }
  // Held until the process ends (the kernel gives it up even on SIGKILL); the hook also keeps the lock
  // referenced, so its connection is never collected and closed early.
  process.once('exit', () => lock.release());
  // grpc-js writes its own diagnostics to stderr; send them through our log instead (process-wide, so here).
  const grpcLog = logger.child({ component: 'grpc' });
  grpc.setLogger({
    error: (...args: unknown[]) => grpcLog.warn(args.map(String).join(' ')),
    info: (...args: unknown[]) => grpcLog.debug(args.map(String).join(' ')),
    debug: (...args: unknown[]) => grpcLog.trace(args.map(String).join(' ')),
  });
  // Signals are heard from here on: a SIGTERM while the agent starts (waiting for etcd, recovering runs)
  // stops it cleanly too, instead of killing the process mid-way.
  const stopping = new AbortController();
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping');
      stopping.abort();
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  let agent: Agent;
  try {
    agent = await Agent.start({ config, logger, peers: grpcPeers, signal: stopping.signal });
  } catch (error) {
    if (!stopping.signal.aborted) throw error;
    logger.info({ error: messageOf(error) }, 'stopped before serving');
    return 0;
  }
  if (stopping.signal.aborted) {
    await agent.stop();
    return 0;
  }
  const tls = config.tls && {
    cert: readFileSync(config.tls.certFile, 'utf8'),
    key: readFileSync(config.tls.keyFile, 'utf8'),
    ca: config.tls.caFile ? readFileSync(config.tls.caFile, 'utf8') : undefined,
    requireClientCert: config.tls.requireClientCert,
  };
  let api: Awaited<ReturnType<typeof startApiServer>>;
  try {
    api = await startApiServer({ operations: agent, listen: config.listen, tls, auth: config.auth, logger });
  } catch (error) {
    logger.fatal({ listen: config.listen, error: messageOf(error) }, 'cannot start the API server');
    await agent.stop();
    return 1;
  }
  const metrics = config.metricsListen ? await serveMetrics(agent.metrics, config.metricsListen) : undefined;
  logger.info({ address: api.address, metrics: config.metricsListen }, 'listening');

  await stopped;
  await api.close();
  await metrics?.close();
  await agent.stop();
  return 0;
}

// Everything is closed by the time main settles. etcd3 keeps internal timers (leases it lost during an etcd
// outage, a client that never connected) that hold the event loop open with nothing left to do, so the
// process exits explicitly, whatever the outcome; the logger is synchronous (pino to stdout), so nothing
// written is lost.
const exit = (code: number) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 100).unref();
};
main().then(exit, (error: unknown) => {
  process.stderr.write(`backupd: ${messageOf(error)}\n`);
  exit(1);
});
