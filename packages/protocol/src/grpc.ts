/**
 * The gRPC side of the wire: both protos loaded once (on first use) with one set of loader
 * options, typed by the declarations proto-loader-gen-types generates from the same files at build
 * time (src/generated, see scripts/gen-types.mjs), so no message is an untyped record.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/generate.js';
import type { WorkerClient } from './generated/kcache/v1/Worker.js';
import { parseTier, type Tier } from './redis.js';

/** This package's proto/ folder (src/ and dist/ both sit beside it). */
export const PROTO_ROOT = fileURLToPath(new URL('../proto/', import.meta.url));

/** Must match the generator's flags in scripts/gen-types.mjs, or the types lie. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: false, oneofs: true };

export const PUBLIC_SERVICE = 'kcache.v1.Generate';
export const WORKER_SERVICE = 'kcache.v1.Worker';
/** Call metadata a router sets on Worker.Generate: its id, so the worker can report load per router. */
export const ROUTER_METADATA = 'x-kcache-router';

interface Loaded {
  definition: protoLoader.PackageDefinition;
  v1: ProtoGrpcType['kcache']['v1'];
}
let loaded: Loaded | undefined;

/** generate.proto (which imports worker.proto): every kcache.v1 service and message. */
export function protos(): Loaded {
  if (!loaded) {
    const definition = protoLoader.loadSync('kcache/v1/generate.proto', { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
    loaded = { definition, v1: pkg.kcache.v1 };
  }
  return loaded;
}

/** A worker's Snapshot: the blocks it holds now, tier by tier, and the event sequence point they stand at. */
export interface WorkerSnapshot {
  epoch: number;
  seq: number;
  tiers: { tier: Tier; hashes: string[] }[];
}

/** Calls a worker's Snapshot (routers resync the index from it; index upkeep checks it for drift). */
export function fetchSnapshot(client: WorkerClient, timeoutMs: number): Promise<WorkerSnapshot> {
  return new Promise((resolve, reject) =>
    client.Snapshot({}, { deadline: Date.now() + timeoutMs }, (e, v) =>
      e || !v
        ? reject(e ?? new Error('empty snapshot'))
        : resolve({
            epoch: v.epoch ?? 0,
            seq: v.seq ?? 0,
            tiers: (v.tiers ?? []).map((t) => ({ tier: parseTier(t.tier), hashes: t.hashes ?? [] })),
          }),
    ),
  );
}
