// deploy/kubernetes/ checked against the Kubernetes API schema (kubernetes-models: the API's OpenAPI schema
// compiled to validators), plus what a schema cannot see: the objects refer to each other by the right names
// and the agents' config in the ConfigMap, like the example configs in deploy/config/, is one backupd accepts.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type IStatefulSet, StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { EndpointSlice, type IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { type ISecret, Secret } from 'kubernetes-models/v1/Secret';
import { type IService, Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadAgentConfig } from '../../src/agent/config.js';
import { ValidationError } from '../../src/errors.js';
import { sourceEngines } from '../../src/sources/registry.js';
import { ROOT } from '../harness/containers.js';
import { tempDir } from '../harness/process.js';

const DIR = join(ROOT, 'deploy/kubernetes');

/** What every manifest has; the checks below read the rest through kubernetes-models' types. */
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
}

function manifests(): { file: string; doc: Manifest }[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => {
        expect(d.errors, file).toEqual([]);
        return { file, doc: d.toJS() as Manifest };
      }),
    );
}

/** The kubernetes-models class of each apiVersion and kind the manifests use; any other kind fails. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1 StatefulSet': StatefulSet,
  'discovery.k8s.io/v1 EndpointSlice': EndpointSlice,
  'v1 ConfigMap': ConfigMap,
  'v1 Secret': Secret,
  'v1 Service': Service,
};

function modelOf(doc: Manifest): new (data: unknown) => { validate(): void } {
  const model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  if (!model) throw new Error(`no schema here for ${doc.apiVersion} ${doc.kind}: add its kubernetes-models class`);
  return model as new (
    data: unknown,
  ) => { validate(): void };
}

describe('the Kubernetes manifests', () => {
  it('are valid against the Kubernetes API schema', async () => {
    const all = manifests();
    expect(all.map((m) => m.doc.kind).sort()).toEqual([
      'ConfigMap',
      'EndpointSlice',
      'Secret',
      'Service',
      'Service',
      'StatefulSet',
    ]);
    for (const { file, doc } of all) {
      const Model = modelOf(doc);
      expect(() => new Model(doc).validate(), `${file}: ${doc.kind} ${doc.metadata.name}`).not.toThrow();
    }
  });

  it('the validator is not vacuous: a wrong type, a missing required field and a bad enum are refused', async () => {
    const set = manifests().find((m) => m.doc.kind === 'StatefulSet')!.doc;
    const Model = modelOf(set);
    const container = (s: IStatefulSet) => s.spec!.template.spec!.containers[0]! as unknown as Record<string, unknown>;
    const broken = [
      (s: IStatefulSet) => {
        (s.spec as unknown as Record<string, unknown>).replicas = 'three';
      },
      (s: IStatefulSet) => {
        delete container(s).name;
      },
      (s: IStatefulSet) => {
        container(s).imagePullPolicy = 'Sometimes';
      },
      (s: IStatefulSet) => {
        (s.spec!.template.spec!.containers[0]!.startupProbe!.grpc as unknown as Record<string, unknown>).port = 'grpc';
      },
    ];
    for (const [i, breakIt] of broken.entries()) {
      const copy = structuredClone(set) as unknown as IStatefulSet;
      breakIt(copy);
      expect(() => new Model(copy).validate(), `broken #${i}`).toThrow();
    }
  });

  it('refer to each other by name, and the StatefulSet runs the image as its non-root user', () => {
    const all = manifests().map((m) => m.doc);
    const one = <T>(kind: string) => all.find((d) => d.kind === kind) as unknown as T;
    const set = one<IStatefulSet>('StatefulSet');
    const pod = set.spec!.template.spec!;
    const services = all.filter((d) => d.kind === 'Service') as unknown as IService[];
    const headless = services.find((s) => s.metadata!.name === set.spec!.serviceName);
    expect(headless, 'the StatefulSet’s serviceName is a Service').toBeDefined();
    expect(headless!.spec!.clusterIP).toBe('None');
    expect(headless!.spec!.selector).toEqual(set.spec!.selector.matchLabels);
    expect(set.spec!.template.metadata!.labels).toMatchObject(set.spec!.selector.matchLabels!);
    const configMap = one<IConfigMap>('ConfigMap');
    const secret = one<ISecret>('Secret');
    const volume = (name: string) => pod.volumes!.find((v) => v.name === name)!;
    expect(volume('config').configMap!.name).toBe(configMap.metadata!.name);
    expect(volume('secret').secret!.secretName).toBe(secret.metadata!.name);
    const agent = pod.containers.find((c) => c.name === 'backupd')!;
    expect(pod.securityContext!.runAsUser).toBe(10001);
    expect(pod.securityContext!.runAsNonRoot).toBe(true);
    expect(agent.startupProbe!.grpc!.port).toBe(50051);
    expect(agent.livenessProbe!.grpc!.port).toBe(50051);
    expect(agent.volumeMounts!.map((m) => m.mountPath)).toContain('/var/lib/backupd');
    expect(set.spec!.volumeClaimTemplates!.map((c) => c.metadata!.name)).toContain('data');
    // The agents' config: accepted by backupd, its etcd endpoint is the etcd Service, its files are mounted.
    const configText = configMap.data!['backupd.json']!;
    const config = JSON.parse(configText) as {
      etcd: { endpoints: string[] };
      auth: { tokenFile: string };
      sources: { config: { passwordFile?: string } }[];
    };
    const etcdHost = new URL(config.etcd.endpoints[0]!).hostname;
    expect(
      services.find((s) => s.metadata!.name === etcdHost),
      `a Service named ${etcdHost}`,
    ).toBeDefined();
    const slice = one<IEndpointSlice>('EndpointSlice');
    expect(slice.metadata!.labels!['kubernetes.io/service-name']).toBe(etcdHost);
    expect(config.auth.tokenFile).toBe('/etc/backupd/secret/token');
    expect(Object.keys(secret.stringData!)).toEqual(expect.arrayContaining(['token', 'pgpass']));
    expect(config.sources[0]!.config.passwordFile).toBe('/run/backupd/pgpass');
    expect(pod.initContainers![0]!.command).toContain('/run/backupd/pgpass');
    expect(configProblems(configText, { BACKUPD_NODE: 'backupd-0' })).toEqual([
      { path: 'auth.tokenFile', message: expect.stringMatching(/^cannot read/) },
    ]);
  });
});

/** The problems backupd finds in a config file's text: only files absent on this machine are expected. */
function configProblems(text: string, env: Record<string, string>): { path: string; message: string }[] {
  const dir = tempDir('k8s-config');
  try {
    const file = join(dir.path, 'backupd.json');
    writeFileSync(file, text);
    loadAgentConfig({ file, env, flags: {} }, sourceEngines);
    return [];
  } catch (error) {
    if (error instanceof ValidationError) return error.problems.map((p) => ({ path: p.path, message: p.message }));
    throw error;
  } finally {
    dir.remove();
  }
}

describe('the example configs in deploy/config', () => {
  for (const [file, files] of [
    ['single-node.json', ['auth.tokenFile']],
    ['cluster-node.json', ['etcd.passwordFile', 'auth.tokenFile']],
  ] as const) {
    it(`${file} is accepted by backupd, except for the secret files it names, absent here`, () => {
      let problems: { path: string; message: string }[] = [];
      try {
        loadAgentConfig({ file: join(ROOT, 'deploy/config', file), env: {}, flags: {} }, sourceEngines);
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        problems = error.problems.map((p) => ({ path: p.path, message: p.message }));
      }
      expect(problems.map((p) => p.path).sort()).toEqual([...files].sort());
      for (const p of problems) expect(p.message).toMatch(/^cannot read/);
    });
  }
});
