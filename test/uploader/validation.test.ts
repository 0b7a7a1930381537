// Every driver's config validation reports every bad field at once, with its path, and redact()
// masks every secret; the registry names unknown kinds and refuses duplicates.

import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { azure } from '../../src/uploader/azure.js';
import { ftp } from '../../src/uploader/ftp.js';
import { gcs } from '../../src/uploader/gcs.js';
import { glacier } from '../../src/uploader/glacier.js';
import { local } from '../../src/uploader/local.js';
import { DestinationRegistry, destinations, openDestination } from '../../src/uploader/registry.js';
import { s3 } from '../../src/uploader/s3.js';

function problems(parse: () => unknown): Record<string, string> {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return Object.fromEntries((error as ValidationError).problems.map((p) => [p.path, p.message]));
  }
  throw new Error('expected a ValidationError');
}

describe('destination config validation', () => {
  it('s3: every bad field at once, under the given path', () => {
    const found = problems(() =>
      s3.parseConfig(
        {
          bucket: 'No_Such Bucket',
          prefix: '/abs/../x',
          endpoint: 'ftp://nope',
          accessKeyId: 'AKID',
          storageClass: 'COLD',
          partSizeMiB: 2,
          extra: true,
        },
        'destinations[0].config',
      ),
    );
    expect(Object.keys(found).sort()).toEqual(
      [
        'destinations[0].config',
        'destinations[0].config.bucket',
        'destinations[0].config.endpoint',
        'destinations[0].config.partSizeMiB',
        'destinations[0].config.prefix',
        'destinations[0].config.secretAccessKey',
        'destinations[0].config.storageClass',
      ].sort(),
    );
    expect(found['destinations[0].config']).toMatch(/unknown field\(s\): extra/);
    expect(found['destinations[0].config.secretAccessKey']).toMatch(/required with accessKeyId/);
  });

  it('s3: a good config with defaults, and no keys at all means the default credential chain', () => {
    const config = s3.parseConfig({ bucket: 'my-backups', prefix: 'cluster-a' }, 'c');
    expect(config).toEqual({ bucket: 'my-backups', prefix: 'cluster-a/' });
  });

  it('azure: credential rules and field errors together', () => {
    const found = problems(() =>
      azure.parseConfig(
        { container: 'Bad_Container', accountKey: 'k', sasToken: 's', blockSizeMiB: 0, accessTier: 'Warm' },
        'd',
      ),
    );
    expect(found['d.container']).toBeDefined();
    expect(found['d.blockSizeMiB']).toMatch(/at least 1/);
    expect(found['d.accessTier']).toBeDefined();
    expect(found.d).toMatch(/only one of accountKey, sasToken/);
    expect(found['d.accountName']).toMatch(/required with accountKey/);
  });

  it('azure: no credentials at all, and an incomplete service principal', () => {
    expect(problems(() => azure.parseConfig({ container: 'c1c' }, 'd')).d).toMatch(/needs one of connectionString/);
    const found = problems(() =>
      azure.parseConfig({ container: 'c1c', accountName: 'acct', azureAd: { tenantId: 't' } }, 'd'),
    );
    expect(Object.keys(found).sort()).toEqual(['d.azureAd.clientId', 'd.azureAd.clientSecret']);
  });

  it('gcs: bad bucket, key without private key, relative key file, bad endpoint', () => {
    const found = problems(() =>
      gcs.parseConfig(
        { bucket: 'B', credentials: { client_email: 'x@y' }, keyFilename: 'key.json', apiEndpoint: 'localhost:1' },
        'g',
      ),
    );
    expect(Object.keys(found).sort()).toEqual(
      ['g.apiEndpoint', 'g.bucket', 'g.credentials.private_key', 'g.keyFilename'].sort(),
    );
  });

  it('glacier: part size must be a power of two, tier known, credentials paired', () => {
    const found = problems(() =>
      glacier.parseConfig({ vault: 'v/1', partSizeMiB: 3, retrievalTier: 'Fast', sessionToken: 'tok' }, 'v'),
    );
    expect(Object.keys(found).sort()).toEqual(['v.partSizeMiB', 'v.retrievalTier', 'v.sessionToken', 'v.vault'].sort());
    expect(found['v.partSizeMiB']).toMatch(/power of two/);
  });

  it('ftp: defaults, and every bad field at once', () => {
    expect(ftp.parseConfig({ host: 'nas.lan', user: 'u', password: 'p' }, 'f')).toEqual({
      host: 'nas.lan',
      port: 21,
      user: 'u',
      password: 'p',
      root: '/',
      secure: false,
      rejectUnauthorized: true,
      maxConnections: 2,
      timeoutMs: 30_000,
    });
    const found = problems(() =>
      ftp.parseConfig({ host: '', port: 70000, user: 'u', root: 'backups', secure: 'implicit', ca: 'not pem' }, 'f'),
    );
    expect(Object.keys(found).sort()).toEqual(['f.ca', 'f.host', 'f.password', 'f.port', 'f.root', 'f.secure'].sort());
  });

  it('local: relative paths are refused', () => {
    expect(problems(() => local.parseConfig({ path: 'backups' }, 'l'))).toHaveProperty('l.path');
  });

  it('no secret value ever appears in a validation message', () => {
    const secretValue = 'SUPER-SECRET-VALUE-123';
    for (const [factory, input] of [
      [s3, { bucket: 'x', secretAccessKey: secretValue, accessKeyId: 5 }],
      [azure, { container: 'x', accountKey: secretValue, sasToken: secretValue }],
      [ftp, { host: 'h', user: 'u', password: secretValue, port: 'x' }],
    ] as const) {
      try {
        factory.parseConfig(input, 'c');
      } catch (error) {
        expect((error as Error).message).not.toContain(secretValue);
        expect(JSON.stringify((error as ValidationError).problems)).not.toContain(secretValue);
      }
    }
  });
});

describe('redact', () => {
  it('masks every secret of every driver', () => {
    const cases = [
      s3.redact(
        s3.parseConfig(
          { bucket: 'bkt', accessKeyId: 'AKID', secretAccessKey: 'S3SECRET', sessionToken: 'TOKEN1' },
          'c',
        ),
      ),
      glacier.redact(glacier.parseConfig({ vault: 'v', accessKeyId: 'AKID', secretAccessKey: 'S3SECRET' }, 'c')),
      azure.redact(azure.parseConfig({ container: 'ccc', connectionString: 'AccountName=a;AccountKey=AZKEY' }, 'c')),
      azure.redact(azure.parseConfig({ container: 'ccc', accountName: 'acct', accountKey: 'AZKEY' }, 'c')),
      azure.redact(azure.parseConfig({ container: 'ccc', accountName: 'acct', sasToken: 'sig=AZSAS' }, 'c')),
      azure.redact(
        azure.parseConfig(
          {
            container: 'ccc',
            accountName: 'acct',
            azureAd: { tenantId: 't', clientId: 'c', clientSecret: 'ADSECRET' },
          },
          'c',
        ),
      ),
      gcs.redact(
        gcs.parseConfig(
          {
            bucket: 'bkt',
            credentials: {
              client_email: 'a@b',
              private_key: '-----BEGIN PRIVATE KEY-----\nPEMBODY\n-----END PRIVATE KEY-----\n',
              private_key_id: 'KEYID',
            },
          },
          'c',
        ),
      ),
      ftp.redact(ftp.parseConfig({ host: 'h', user: 'u', password: 'FTPPASS' }, 'c')),
    ];
    const text = JSON.stringify(cases);
    for (const secret of ['S3SECRET', 'TOKEN1', 'AZKEY', 'AZSAS', 'ADSECRET', 'PEMBODY', 'KEYID', 'FTPPASS']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('AKID'); // an access key id is not a secret and helps find the key
  });
});

describe('destination registry', () => {
  it('knows every built-in kind', () => {
    expect(destinations.kinds).toEqual(['azure', 'ftp', 'gcs', 'glacier', 'local', 's3']);
  });

  it('names an unknown kind and lists the known ones', async () => {
    await expect(openDestination({ name: 'x', kind: 'dropbox', config: {} })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(
        /unknown destination kind "dropbox" \(known: azure, ftp, gcs, glacier, local, s3\)/,
      ),
    });
  });

  it('refuses a kind registered twice', () => {
    expect(() => new DestinationRegistry([s3, azure, s3])).toThrow(/"s3" is registered twice/);
  });

  it('validates the config under the spec path, and redacts a spec', async () => {
    await expect(
      openDestination({ name: 'x', kind: 's3', config: { bucket: 'B' } }, 'tasks.t1.destinations[2]'),
    ).rejects.toMatchObject({ problems: [{ path: 'tasks.t1.destinations[2].config.bucket' }] });
    const spec = destinations.redact({ name: 'n', kind: 'ftp', config: { host: 'h', user: 'u', password: 'pw12345' } });
    expect(JSON.stringify(spec)).not.toContain('pw12345');
  });

  it('opens a local destination from a spec', async () => {
    const d = await openDestination({ name: 'disk', kind: 'local', config: { path: '/tmp' } });
    expect(d).toMatchObject({ name: 'disk', kind: 'local', capabilities: { listable: true } });
    await d.close();
  });
});
