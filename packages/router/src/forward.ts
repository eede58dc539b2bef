/**
 * Streams one attempt of a request to one worker and relays its messages to the client. A failure
 * before the first token that another worker may not share resolves "retry" with the worker's
 * status (the routing core tries the next choice); anything after the first token is the client's
 * to see. Only the worker's own faults count against its breaker (faults.ts).
 */
import * as grpc from '@grpc/grpc-js';
import type { WorkerGenerateRequest, WorkerGenerateResponse__Output } from '@kcache/protocol';
import { classifyFailure } from './faults.js';
import type { RouterMetrics } from './metrics.js';
import type { PooledWorker } from './pool.js';
import type { ResponseSink } from './sink.js';

export type AttemptResult =
  | { outcome: 'done' }
  | { outcome: 'retry'; code: grpc.status; details: string }
  /** The worker failed, froze or gave up (abort) after streaming some tokens: resume elsewhere. */
  | { outcome: 'migrate'; code: grpc.status; details: string };

/** What the client has received of a request so far, across workers. */
export interface StreamProgress {
  tokens: number[];
  /** Characters of text sent (JavaScript string length). */
  textLen: number;
  /** How many times the stream has moved to another worker. */
  migrations: number;
  /** ms from the request's arrival to its first token (undefined until then). */
  ttftMs?: number;
  /** The final message's worker and usage, once it came. */
  final?: { workerId: string; promptTokens: number; cachedTokens: number };
  /** How the client's stream ended: 'OK' or a status name (undefined while it runs). */
  status?: string;
}

export interface ForwardContext {
  /** The client's end: where the messages go, and whether it is still there. */
  sink: ResponseSink;
  request: WorkerGenerateRequest;
  /** Carries this router's id (ROUTER_METADATA). */
  metadata: grpc.Metadata;
  metrics: RouterMetrics;
  /** performance.now() when the request reached the router. */
  t0: number;
  predictedCachedTokens: number;
  progress: StreamProgress;
  /** Whether a failure after the first token may resume on another worker (else the client sees it). */
  mayMigrate: boolean;
  /**
   * Silence after which the worker is taken for frozen (its breaker counts it; the attempt is
   * retried or migrated): before the first message (it may be queued or prefilling a long prompt)
   * and between messages.
   */
  timeouts: { firstMs: number; betweenMs: number };
}

export function forward(w: PooledWorker, ctx: ForwardContext): Promise<AttemptResult> {
  const { sink, metrics } = ctx;
  return new Promise((resolve) => {
    let started = false;
    let finished = false;
    const background = (ctx.request.priority ?? 0) > 0;
    w.inFlight++;
    if (background) w.inFlightBackground++;
    const upstream = w.client.Generate(ctx.request, ctx.metadata, { deadline: sink.deadline });
    const stopWatchingCancel = sink.onCancel(() => upstream.cancel());
    let silence: NodeJS.Timeout | undefined;
    const end = (result: AttemptResult) => {
      if (finished) return;
      finished = true;
      clearTimeout(silence);
      w.inFlight--;
      if (background) w.inFlightBackground--;
      stopWatchingCancel();
      resolve(result);
    };
    const watch = (ms: number) => {
      clearTimeout(silence);
      silence = setTimeout(() => {
        if (finished) return;
        // a frozen or unreachable worker: its fault, like a dropped connection
        const details = `worker ${w.lease.workerId} sent nothing for ${ms} ms`;
        upstream.cancel();
        w.breaker.trip(); // new requests avoid it now, not after two more of them have waited this long
        metrics.timeouts.inc({ phase: started ? 'between_tokens' : 'first_token' });
        if (!started) end({ outcome: 'retry', code: grpc.status.UNAVAILABLE, details });
        else if (ctx.mayMigrate) end({ outcome: 'migrate', code: grpc.status.DEADLINE_EXCEEDED, details });
        else {
          metrics.requests.inc({ outcome: 'error' });
          ctx.progress.status = 'UNAVAILABLE';
          sink.fail(grpc.status.UNAVAILABLE, details);
          end({ outcome: 'done' });
        }
      }, ms);
    };
    watch(ctx.timeouts.firstMs);
    upstream.on('data', (m: WorkerGenerateResponse__Output) => {
      if (finished) return;
      watch(ctx.timeouts.betweenMs);
      if (!started) {
        started = true;
        w.breaker.success();
        if (ctx.progress.tokens.length === 0) {
          ctx.progress.ttftMs = performance.now() - ctx.t0;
          metrics.ttft.observe(ctx.progress.ttftMs / 1000);
        }
      }
      if (m.chunk) {
        ctx.progress.tokens.push(...(m.chunk.tokenIds ?? []));
        ctx.progress.textLen += (m.chunk.text ?? '').length;
      }
      if (m.final) {
        // the worker gave the request up (it is draining, or its engine failed), not the client
        if (m.final.finishReason === 'abort' && !sink.cancelled && ctx.mayMigrate) {
          upstream.cancel();
          end({ outcome: 'migrate', code: grpc.status.ABORTED, details: `worker ${w.lease.workerId} aborted the request` });
          return;
        }
        const actual = m.final.usage?.cachedTokens ?? 0;
        metrics.actualCached.inc(actual);
        metrics.predictedCached.inc(ctx.predictedCachedTokens);
        metrics.cacheMisprediction.observe(actual - ctx.predictedCachedTokens);
        m.final.migrations = ctx.progress.migrations;
        ctx.progress.final = {
          workerId: m.final.workerId ?? '',
          promptTokens: m.final.usage?.promptTokens ?? 0,
          cachedTokens: m.final.usage?.cachedTokens ?? 0,
        };
      }
      sink.write(m);
    });
    upstream.on('end', () => {
      if (finished) return; // grpc-js may end a stream after its error
      if (!started) w.breaker.success();
      metrics.requests.inc({ outcome: 'ok' });
      ctx.progress.status = 'OK';
      sink.end();
      end({ outcome: 'done' });
    });
    upstream.on('error', (e: grpc.ServiceError) => {
      if (finished) return;
      if (sink.cancelled) {
        metrics.requests.inc({ outcome: 'cancelled' });
        ctx.progress.status = 'CANCELLED';
        end({ outcome: 'done' });
        return;
      }
      const clientOutOfTime = e.code === grpc.status.DEADLINE_EXCEEDED && sink.deadline <= Date.now();
      const handling = classifyFailure(e.code, clientOutOfTime);
      if (handling.breaker) w.breaker.failure();
      if (!started && handling.retry) {
        metrics.retries.inc({ cause: grpc.status[e.code] ?? String(e.code) });
        end({ outcome: 'retry', code: e.code, details: e.details });
        return;
      }
      if (started && handling.breaker && ctx.mayMigrate) {
        end({ outcome: 'migrate', code: e.code, details: e.details });
        return;
      }
      metrics.requests.inc({ outcome: 'error' });
      ctx.progress.status = grpc.status[e.code] ?? String(e.code);
      sink.fail(e.code, e.details);
      end({ outcome: 'done' });
    });
  });
}
