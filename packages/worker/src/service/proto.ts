import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The repo's proto/ directory (packages/worker/{src,dist}/service -> repo root). */
export function protoDir(): string {
  const dir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'proto');
  if (!existsSync(dir)) throw new Error(`proto directory not found at ${dir}`);
  return dir;
}

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: false, oneofs: true };

export function loadWorkerProto(): { definition: protoLoader.PackageDefinition; pkg: grpc.GrpcObject } {
  const definition = protoLoader.loadSync('kcache/v1/worker.proto', { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
  return { definition, pkg: grpc.loadPackageDefinition(definition) };
}

/** The Worker service's client constructor (for routers and tests). */
export function workerClientConstructor(): grpc.ServiceClientConstructor {
  const { pkg } = loadWorkerProto();
  return ((pkg.kcache as grpc.GrpcObject).v1 as grpc.GrpcObject).Worker as grpc.ServiceClientConstructor;
}
