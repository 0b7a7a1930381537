// moto (python3 -m moto.server) for the S3 and Glacier tests: an in-memory AWS on 127.0.0.1.
// With `auth: true` moto checks credentials like AWS does: the harness creates one IAM user with an
// allow-all policy (moto's first three requests are let through unauthenticated for exactly that)
// and returns its keys. Without auth moto accepts any credentials.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { answersHttp, freePort, startProcess, tempDir } from './process.js';

export interface MotoServer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The server's process id (benchmarks read its CPU time). */
  pid: number;
  stop(): Promise<void>;
}

const INSTALL = "It needs Python 3 with moto's server extras: pip install 'moto[server]' (moto 5.x).";

export async function startMoto(options: { auth?: boolean } = {}): Promise<MotoServer> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const dir = tempDir('moto');
  let server: Awaited<ReturnType<typeof startProcess>>;
  try {
    server = await startProcess({
      what: 'moto (python3 -m moto.server)',
      install: INSTALL,
      command: 'python3',
      args: ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)],
      port,
      cwd: dir.path,
      env: {
        ...(options.auth ? { INITIAL_NO_AUTH_ACTION_COUNT: '3' } : {}),
        // moto must never see real credentials or regions from the developer's environment
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        AWS_DEFAULT_REGION: 'us-east-1',
      },
      ready: () => answersHttp(`${endpoint}/moto-api/`),
    });
  } catch (error) {
    dir.remove();
    throw error;
  }
  const stop = async () => {
    await server.stop();
    dir.remove();
  };
  // Without auth moto takes any keys; distinct values keep the secret checks of the tests meaningful.
  if (!options.auth)
    return {
      endpoint,
      accessKeyId: 'AKIDMOTOUNCHECKED',
      secretAccessKey: 'moto-secret-unchecked',
      pid: server.pid,
      stop,
    };
  try {
    const keys = await createIamUser(endpoint);
    return { endpoint, ...keys, pid: server.pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

const CREATE_USER = `
import sys, boto3
iam = boto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y')
iam.create_user(UserName='backupd')
key = iam.create_access_key(UserName='backupd')['AccessKey']
iam.put_user_policy(UserName='backupd', PolicyName='all', PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}')
print(key['AccessKeyId'], key['SecretAccessKey'])
`;

async function createIamUser(endpoint: string): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('python3', ['-c', CREATE_USER, endpoint], { timeout: 20_000 }));
  } catch (error) {
    throw new Error(`could not create a moto IAM user with boto3 (${String(error)}). ${INSTALL}`);
  }
  const [accessKeyId, secretAccessKey] = stdout.trim().split(/\s+/);
  if (!accessKeyId || !secretAccessKey) throw new Error(`unexpected output creating a moto IAM user: ${stdout}`);
  return { accessKeyId, secretAccessKey };
}
