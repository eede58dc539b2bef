import * as grpc from '@grpc/grpc-js';
import { workerClientConstructor } from '@kcache/worker';

// biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped objects
type Msg = Record<string, any>;

export interface GenerateResult {
  tokenIds: number[];
  text: string;
  chunks: number;
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number };
  workerId: string;
  logprobs: Msg[];
}

export function workerClient(address: string): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
  const C = workerClientConstructor();
  return new C(address, grpc.credentials.createInsecure()) as never;
}

/** Collects a Generate stream (worker or router: the messages are the same). */
export function collect(call: grpc.ClientReadableStream<Msg>): Promise<GenerateResult> {
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
    call.on('data', (m: Msg) => {
      if (m.chunk) {
        out.chunks++;
        out.tokenIds.push(...(m.chunk.tokenIds ?? []));
        out.text += m.chunk.text ?? '';
        out.logprobs.push(...(m.chunk.logprobs ?? []));
      }
      if (m.final) {
        out.finishReason = m.final.finishReason;
        out.text += m.final.text ?? '';
        out.usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, ...m.final.usage };
        out.workerId = m.final.workerId;
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

/** Calls a worker's Generate and collects the stream. */
export function generate(
  client: grpc.Client,
  request: Msg,
  opts: { deadlineMs?: number; onCall?: (c: grpc.ClientReadableStream<Msg>) => void } = {},
): Promise<GenerateResult> {
  const callOpts: grpc.CallOptions = opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {};
  const call = (client as unknown as { Generate(r: Msg, o: grpc.CallOptions): grpc.ClientReadableStream<Msg> }).Generate(request, callOpts);
  opts.onCall?.(call);
  return collect(call);
}

export function unary<T>(client: grpc.Client, method: string, req: Msg): Promise<T> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, (r: Msg, cb: (e: Error | null, v: T) => void) => void>)[method]?.(req, (e, v) =>
      e ? reject(e) : resolve(v),
    ),
  );
}
