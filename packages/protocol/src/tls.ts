/**
 * Mutual TLS between routers and workers (the cluster's own CA; `kcache certs` makes one). A
 * worker accepts only callers with a certificate of the cluster CA. A router dials a worker only
 * if the worker's certificate, signed by that CA, names (subject CN) the worker id of the lease it
 * came from: a lease written by someone who can write to Redis but holds no certificate for that
 * id captures nothing.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

export interface ClusterTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

export class ClusterTlsError extends Error {
  override readonly name = 'ClusterTlsError';
}

/** Reads the three PEM files; an error names the file (and the flag `flagPrefix`-cert/-key/-ca). */
export function loadClusterTls(paths: { cert?: string; key?: string; ca?: string }, flagPrefix = '--tls'): ClusterTls | null {
  const given = [paths.cert, paths.key, paths.ca].filter((p) => p !== undefined).length;
  if (given === 0) return null;
  if (given !== 3) throw new ClusterTlsError(`${flagPrefix}-cert, ${flagPrefix}-key and ${flagPrefix}-ca go together`);
  const read = (path: string, flag: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ClusterTlsError(
        `${flagPrefix}-${flag}: ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      );
    }
  };
  return { cert: read(paths.cert as string, 'cert'), key: read(paths.key as string, 'key'), ca: read(paths.ca as string, 'ca') };
}

/** A worker's server: TLS with a client certificate of the cluster CA required; plaintext without `tls`. */
export function workerServerCredentials(tls: ClusterTls | null): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** A router's connection to one worker: TLS, this router's certificate, and the worker's certificate must name `workerId`. */
export function workerChannelCredentials(tls: ClusterTls | null, workerId: string): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tls.ca, tls.key, tls.cert, {
    // instead of the host name (a lease's address is an IP or a pod name): the worker id it claims
    checkServerIdentity: (_host, cert) =>
      cert.subject?.CN === workerId
        ? undefined
        : new Error(`the worker at this address presents a certificate for '${cert.subject?.CN}', not '${workerId}'`),
  });
}
