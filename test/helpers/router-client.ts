import * as grpc from '@grpc/grpc-js';
import { type GenerateClient, type GenerateRequest, protos } from '@kcache/protocol';
import { collect, type GenerateResult } from './worker-client.js';

export function routerClient(address: string): GenerateClient {
  return new (protos().v1.Generate)(address, grpc.credentials.createInsecure());
}

export function routed(client: GenerateClient, request: GenerateRequest, deadlineMs = 30_000): Promise<GenerateResult> {
  return collect(client.Generate(request, { deadline: Date.now() + deadlineMs }));
}
