#!/usr/bin/env node
// The image's health check (`backupd-health`): asks the local agent's gRPC health service (grpc.health.v1)
// whether it is SERVING; exit 0 if so, 1 if not or unreachable. For orchestrators without a native gRPC probe
// (Docker's HEALTHCHECK, or a Kubernetes exec probe when the agent serves TLS).
//   backupd-health [HOST:PORT]   (default: the port of BACKUPD_LISTEN, on 127.0.0.1)
// With BACKUPD_HEALTH_CA (a PEM file) it connects with TLS and checks the server against that CA.
import { readFileSync } from 'node:fs';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service } from 'grpc-health-check';

const listenPort = (process.env.BACKUPD_LISTEN ?? '').split(':').pop() || '50051';
const address = process.argv[2] ?? `127.0.0.1:${listenPort}`;
const ca = process.env.BACKUPD_HEALTH_CA;
const channel = ca ? credentials.createSsl(readFileSync(ca)) : credentials.createInsecure();
const Health = makeGenericClientConstructor(service, 'Health');
const client = new Health(address, channel);
client.check({ service: '' }, { deadline: Date.now() + 4000 }, (error, response) => {
  client.close();
  if (error) {
    process.stderr.write(`backupd-health: ${address}: ${error.details || error.message}\n`);
    process.exit(1);
  }
  const status = response?.status;
  process.stdout.write(`${address}: ${status}\n`);
  process.exit(status === 'SERVING' || status === 1 ? 0 : 1);
});
