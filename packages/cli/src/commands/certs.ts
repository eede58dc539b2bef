/**
 * `kcache certs --out DIR --workers w1,w2 [--routers r1] [--days 365]`: a development cluster CA
 * and the certificates of mutual TLS between routers and workers. A worker's certificate names
 * its worker id (subject CN and a DNS SAN): a router dials a worker only if the certificate it
 * presents names the worker id of the lease it came from. Made with the `openssl` command line
 * (Node can parse certificates but not issue them); EC P-256 keys, private keys mode 0600.
 *
 * Files: ca.crt, ca.key, worker-<id>.crt/.key per worker, router-<id>.crt/.key per router.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { intArg, UsageError } from '../args.js';

export const CERTS_USAGE = 'kcache certs --out DIR --workers w1,w2 [--routers r1] [--days 365]';

export class CertsError extends Error {
  override readonly name = 'CertsError';
}

/** Worker and router ids become file names and certificate names: keep them plain. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error)
    throw new CertsError(
      `openssl: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not installed (apt-get install openssl)' : r.error.message}`,
    );
  if (r.status !== 0) throw new CertsError(`openssl ${args[0]}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`);
}

export interface ClusterCertsOptions {
  workers: string[];
  routers: string[];
  days?: number;
}

export interface CertPaths {
  cert: string;
  key: string;
  ca: string;
}

/** Writes the CA and one certificate per worker and router into `dir` (created if missing). */
export function makeClusterCerts(
  dir: string,
  o: ClusterCertsOptions,
): { workers: Map<string, CertPaths>; routers: Map<string, CertPaths> } {
  for (const id of [...o.workers, ...o.routers])
    if (!ID.test(id)) throw new CertsError(`'${id}' is not a usable id (1-64 of A-Z a-z 0-9 . _ -)`);
  const days = String(o.days ?? 365);
  mkdirSync(dir, { recursive: true });
  const ca = join(dir, 'ca.crt');
  if (!existsSync(ca)) {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
    chmodSync(join(dir, 'ca.key'), 0o600);
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        'ca.key',
        '-sha256',
        '-days',
        days,
        '-subj',
        '/CN=kcache cluster CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-out',
        'ca.crt',
      ],
      dir,
    );
  }
  const leaf = (name: string, cn: string, usage: string, san: string): CertPaths => {
    const ext = join(dir, `${name}.ext`);
    writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=${san}\n`);
    try {
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
      chmodSync(join(dir, `${name}.key`), 0o600);
      openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], dir);
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-days',
          days,
          '-sha256',
          '-extfile',
          `${name}.ext`,
          '-out',
          `${name}.crt`,
        ],
        dir,
      );
    } finally {
      rmSync(ext, { force: true });
      rmSync(join(dir, `${name}.csr`), { force: true });
    }
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca };
  };
  return {
    // a worker serves (its id is what routers check) and may be a client of nothing but the cluster
    workers: new Map(
      o.workers.map((id) => [id, leaf(`worker-${id}`, id, 'serverAuth,clientAuth', `DNS:${id},DNS:localhost,IP:127.0.0.1`)]),
    ),
    // a router is only a client: its certificate cannot pass for a worker's
    routers: new Map(o.routers.map((id) => [id, leaf(`router-${id}`, `router ${id}`, 'clientAuth', `DNS:router-${id}`)])),
  };
}

export async function certsCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { out: { type: 'string' }, workers: { type: 'string' }, routers: { type: 'string' }, days: { type: 'string' } },
  });
  if (!values.out) throw new UsageError('--out DIR is required');
  if (!values.workers) throw new UsageError('--workers w1,w2,... is required (the worker ids the certificates name)');
  const list = (v: string) => v.split(',').filter((s) => s.length > 0);
  try {
    makeClusterCerts(values.out, {
      workers: list(values.workers),
      routers: list(values.routers ?? 'r1'),
      days: intArg('days', values.days, 365, 1),
    });
  } catch (e) {
    if (e instanceof CertsError) throw new UsageError(e.message);
    throw e;
  }
  process.stdout.write(`wrote the cluster CA and certificates to ${values.out}\n`);
}
