/**
 * Streams one attempt of a request to one worker and relays its messages to the client. A failure
 * before the first token that another worker may not share resolves "retry" with the worker's
 * status (the routing core tries the next choice); anything after the first token is the client's
 * to see. Only the worker's own faults count against its breaker (faults.ts).
 */
import * as grpc from '@grpc/grpc-js';
import type { GenerateRequest__Output, GenerateResponse, WorkerGenerateRequest, WorkerGenerateResponse__Output } from '@kcache/protocol';
import { classifyFailure } from './faults.js';
import type { RouterMetrics } from './metrics.js';
import type { PooledWorker } from './pool.js';

export type AttemptResult = { outcome: 'done' } | { outcome: 'retry'; code: grpc.status; details: string };

export interface ForwardContext {
  call: grpc.ServerWritableStream<GenerateRequest__Output, GenerateResponse>;
  request: WorkerGenerateRequest;
  /** Carries this router's id (ROUTER_METADATA). */
  metadata: grpc.Metadata;
  metrics: RouterMetrics;
  /** performance.now() when the request reached the router. */
  t0: number;
  predictedCachedTokens: number;
}

export function forward(w: PooledWorker, ctx: ForwardContext): Promise<AttemptResult> {
  const { call, metrics } = ctx;
  return new Promise((resolve) => {
    let started = false;
    let finished = false;
    w.inFlight++;
    const upstream = w.client.Generate(ctx.request, ctx.metadata, { deadline: call.getDeadline() });
    const onCancel = () => upstream.cancel();
    call.once('cancelled', onCancel);
    const end = (result: AttemptResult) => {
      if (finished) return;
      finished = true;
      w.inFlight--;
      call.removeListener('cancelled', onCancel);
      resolve(result);
    };
    upstream.on('data', (m: WorkerGenerateResponse__Output) => {
      if (!started) {
        started = true;
        w.breaker.success();
        metrics.ttft.observe((performance.now() - ctx.t0) / 1000);
      }
      if (m.final) {
        const actual = m.final.usage?.cachedTokens ?? 0;
        metrics.actualCached.inc(actual);
        metrics.predictedCached.inc(ctx.predictedCachedTokens);
        metrics.cacheMisprediction.observe(actual - ctx.predictedCachedTokens);
      }
      call.write(m);
    });
    upstream.on('end', () => {
      if (finished) return; // grpc-js may end a stream after its error
      if (!started) w.breaker.success();
      metrics.requests.inc({ outcome: 'ok' });
      call.end();
      end({ outcome: 'done' });
    });
    upstream.on('error', (e: grpc.ServiceError) => {
      if (finished) return;
      if (call.cancelled) {
        metrics.requests.inc({ outcome: 'cancelled' });
        end({ outcome: 'done' });
        return;
      }
      const deadline = call.getDeadline();
      const clientOutOfTime = e.code === grpc.status.DEADLINE_EXCEEDED && deadline !== Number.POSITIVE_INFINITY && +deadline <= Date.now();
      const handling = classifyFailure(e.code, clientOutOfTime);
      if (handling.breaker) w.breaker.failure();
      if (!started && handling.retry) {
        metrics.retries.inc({ cause: grpc.status[e.code] ?? String(e.code) });
        end({ outcome: 'retry', code: e.code, details: e.details });
        return;
      }
      metrics.requests.inc({ outcome: 'error' });
      call.emit('error', { code: e.code, details: e.details });
      end({ outcome: 'done' });
    });
  });
}
