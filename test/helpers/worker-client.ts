import * as grpc from '@grpc/grpc-js';
import {
  type Logprobs__Output,
  protos,
  type WorkerClient,
  type WorkerGenerateRequest,
  type WorkerGenerateResponse__Output,
} from '@kcache/protocol';

export interface GenerateResult {
  tokenIds: number[];
  text: string;
  chunks: number;
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number };
  workerId: string;
  logprobs: Logprobs__Output[];
}

export function workerClient(address: string): WorkerClient {
  return new (protos().v1.Worker)(address, grpc.credentials.createInsecure());
}

/** Collects a Generate stream (worker or router: the messages are the same). */
export function collect(call: grpc.ClientReadableStream<WorkerGenerateResponse__Output>): Promise<GenerateResult> {
  return new Promise((resolve, reject) => {
    const out: GenerateResult = {
      tokenIds: [],
      text: '',
      chunks: 0,
      finishReason: '',
      usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 },
      workerId: '',
      logprobs: [],
    };
    call.on('data', (m: WorkerGenerateResponse__Output) => {
      if (m.chunk) {
        out.chunks++;
        out.tokenIds.push(...(m.chunk.tokenIds ?? []));
        out.text += m.chunk.text ?? '';
        out.logprobs.push(...(m.chunk.logprobs ?? []));
      }
      if (m.final) {
        out.finishReason = m.final.finishReason ?? '';
        out.text += m.final.text ?? '';
        out.usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, ...m.final.usage };
        out.workerId = m.final.workerId ?? '';
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

type Streaming<R> = (r: R, o: grpc.CallOptions) => grpc.ClientReadableStream<WorkerGenerateResponse__Output>;

/** Calls a worker's (or a router's) Generate and collects the stream. */
export function generate<R = WorkerGenerateRequest>(
  client: { Generate: Streaming<R> },
  request: R,
  opts: { deadlineMs?: number; onCall?: (c: grpc.ClientReadableStream<WorkerGenerateResponse__Output>) => void } = {},
): Promise<GenerateResult> {
  const callOpts: grpc.CallOptions = opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {};
  const call = client.Generate(request, callOpts);
  opts.onCall?.(call);
  return collect(call);
}

/** A unary call by method name (Info, Abort, Snapshot, ...). */
export function unary<T>(client: grpc.Client, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, (r: object, cb: (e: Error | null, v: T) => void) => void>)[method]?.(req, (e, v) =>
      e ? reject(e) : resolve(v),
    ),
  );
}
