import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS, protoDir } from '@kcache/worker';
import { collect, type GenerateResult } from './worker-client.js';

// biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped objects
type Msg = Record<string, any>;

export function routerClient(address: string): grpc.Client {
  const def = protoLoader.loadSync('kcache/v1/generate.proto', { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
  const pkg = grpc.loadPackageDefinition(def);
  const C = ((pkg.kcache as grpc.GrpcObject).v1 as grpc.GrpcObject).Generate as grpc.ServiceClientConstructor;
  return new C(address, grpc.credentials.createInsecure());
}

export function routed(client: grpc.Client, request: Msg, deadlineMs = 30_000): Promise<GenerateResult> {
  const call = (client as unknown as { Generate(r: Msg, o: grpc.CallOptions): grpc.ClientReadableStream<Msg> }).Generate(request, {
    deadline: Date.now() + deadlineMs,
  });
  return collect(call);
}
