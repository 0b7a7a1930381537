// A throwaway self-signed certificate for localhost and 127.0.0.1, made by openssl. Fails loudly (ENOENT)
// where openssl is missing: a TLS test must not pass without a real certificate.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Write `cert.pem` and `key.pem` (EC P-256, valid one day) into `dir`; returns their paths. */
export function selfSignedCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'pipe' },
  );
  return { cert, key };
}
