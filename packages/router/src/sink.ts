/**
 * Where a routed request's answer goes, whatever the client's protocol: the gRPC stream of
 * kcache.v1.Generate, or an HTTP response (OpenAI's API). The routing core writes the worker's
 * messages here and learns here whether the client is still there and how long it waits.
 */
import type * as grpc from '@grpc/grpc-js';
import type { GenerateRequest__Output, GenerateResponse } from '@kcache/protocol';

export interface ResponseSink {
  /** The client went away. */
  readonly cancelled: boolean;
  /** Calls `f` once if the client goes away; the returned function stops that. */
  onCancel(f: () => void): () => void;
  /** When the client stops waiting (ms since the epoch; Infinity: never). */
  readonly deadline: number;
  write(m: GenerateResponse): void;
  end(): void;
  /** Ends with an error status; `trailer` carries hints such as retry-after-ms. */
  fail(code: grpc.status, details: string, trailer?: grpc.Metadata): void;
}

/** The sink of a kcache.v1.Generate server stream. */
export function grpcSink(call: grpc.ServerWritableStream<GenerateRequest__Output, GenerateResponse>): ResponseSink {
  const d = call.getDeadline();
  return {
    get cancelled() {
      return call.cancelled;
    },
    onCancel(f) {
      call.once('cancelled', f);
      return () => call.removeListener('cancelled', f);
    },
    deadline: d instanceof Date ? d.getTime() : d,
    write: (m) => call.write(m),
    end: () => call.end(),
    fail: (code, details, metadata) => call.emit('error', { code, details, metadata }),
  };
}
