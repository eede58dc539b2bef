import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS, protoDir } from '@kcache/worker';
import type { GenerateResult } from './worker-client.js';

// biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped objects
type Msg = Record<string, any>;

export function routerClient(address: string): grpc.Client {
  const def = protoLoader.loadSync('kcache/v1/generate.proto', { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
  const pkg = grpc.loadPackageDefinition(def);
  const C = ((pkg.kcache as grpc.GrpcObject).v1 as grpc.GrpcObject).Generate as grpc.ServiceClientConstructor;
  return new C(address, grpc.credentials.createInsecure());
}

export function routed(client: grpc.Client, request: Msg, deadlineMs = 30_000): Promise<GenerateResult> {
  return new Promise((resolve, reject) => {
    const call = (client as unknown as { Generate(r: Msg, o: grpc.CallOptions): grpc.ClientReadableStream<Msg> }).Generate(request, {
      deadline: Date.now() + deadlineMs,
    });
    const out: GenerateResult = {
      tokenIds: [],
      text: '',
      chunks: 0,
      finishReason: '',
      usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 },
      workerId: '',
      logprobs: [],
    };
    call.on('data', (m: Msg) => {
      if (m.chunk) {
        out.chunks++;
        out.tokenIds.push(...(m.chunk.tokenIds ?? []));
        out.text += m.chunk.text ?? '';
      }
      if (m.final) {
        out.finishReason = m.final.finishReason;
        out.usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, ...m.final.usage };
        out.workerId = m.final.workerId;
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}
