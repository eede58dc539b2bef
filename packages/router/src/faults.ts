/**
 * Whose fault a failed attempt was, which decides what the router does with it. Only the worker's
 * own faults (unreachable, crashed, internal errors) count against its circuit breaker; a request
 * the worker rightly refused (bad input, too large for it) or could not take now (its queue is
 * full) must not open breakers, or one client sending oversized prompts takes healthy workers out
 * of rotation for everyone.
 */
import * as grpc from '@grpc/grpc-js';

export interface FailureHandling {
  /** Try the next worker (only before the first token). */
  retry: boolean;
  /** Count it against the worker's circuit breaker. */
  breaker: boolean;
}

const WORKER_FAULTS = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.ABORTED,
  grpc.status.DATA_LOSS,
]);

/**
 * `clientGone`: the client cancelled or its own deadline passed (then nothing is retried or
 * counted: the failure is the client's).
 */
export function classifyFailure(code: grpc.status, clientGone: boolean): FailureHandling {
  if (clientGone) return { retry: false, breaker: false };
  if (WORKER_FAULTS.has(code)) return { retry: true, breaker: true };
  // full queue, or a request larger than this worker's KV pool: another worker may take it
  if (code === grpc.status.RESOURCE_EXHAUSTED) return { retry: true, breaker: false };
  // INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, DEADLINE_EXCEEDED set by the client, ...
  return { retry: false, breaker: false };
}
