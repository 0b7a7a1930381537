// The agent's calls to other nodes (agent/peer-calls.ts) over the gRPC API: the agent's types go out as
// requests and come back from the answers through the convert-*.ts files; failures are the peer's own errors (peers.ts).

import type { PeerCalls, PeerOptions } from '../agent/peer-calls.js';
import { BackupdError } from '../errors.js';
import { oneTimeInputToProto, restoreInputToProto } from './convert-restore.js';
import { progressFromProto, runFromProto } from './convert-run.js';
import { Peers } from './peers.js';

export function grpcPeers(options: PeerOptions): PeerCalls {
  const peers = new Peers(options);
  return {
    async backupNow(node, task, database, level) {
      const answer = await peers.call(node, 'backup now', (api) => api.unary('BackupNow', { task, database, level }));
      return answer.runs.map(runFromProto);
    },
    async oneTimeBackup(node, input) {
      return runFromProto(
        await peers.call(node, 'one-time backup', (api) => api.unary('OneTimeBackup', oneTimeInputToProto(input))),
      );
    },
    async cancelRun(node, runId) {
      return runFromProto(await peers.call(node, 'cancel', (api) => api.unary('CancelRun', { runId })));
    },
    async delayUnit(node, task, database, seconds) {
      await peers.call(node, 'delay', (api) => api.unary('DelayUnit', { task, database, seconds }));
    },
    async getRun(node, runId) {
      return runFromProto(await peers.call(node, 'progress', (api) => api.unary('GetRun', { runId })));
    },
    async *watchRun(node, runId) {
      const events = peers.stream(node, 'progress', (api) => api.stream('WatchRun', { runId }, { timeoutMs: null }));
      for await (const event of events) if (event.run) yield runFromProto(event.run);
    },
    async restore(node, input, onProgress, signal) {
      const events = peers.stream(node, 'restore', (api) =>
        api.stream('Restore', restoreInputToProto(input), { timeoutMs: null }),
      );
      for await (const event of events) {
        if (signal?.aborted) throw new BackupdError('CANCELLED', 'restore cancelled');
        if (event.progress) onProgress(progressFromProto(event.progress));
        if (event.result) {
          const r = event.result;
          return { location: r.location, note: r.note, bytes: Number(r.bytes), seconds: r.seconds };
        }
      }
      throw new BackupdError('UNAVAILABLE', `node ${node} ended the restore without a result`);
    },
    health: (node) => peers.health(node),
    close: () => peers.close(),
  };
}
