import * as grpc from '@grpc/grpc-js';
import { expect, test } from 'vitest';
import { classifyFailure } from './faults.js';

test("only the worker's faults count against its breaker; refused and overloaded requests move on without it", () => {
  for (const code of [grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.ABORTED])
    expect(classifyFailure(code, false)).toEqual({ retry: true, breaker: true });
  expect(classifyFailure(grpc.status.RESOURCE_EXHAUSTED, false)).toEqual({ retry: true, breaker: false });
  for (const code of [grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.ALREADY_EXISTS, grpc.status.DEADLINE_EXCEEDED])
    expect(classifyFailure(code, false)).toEqual({ retry: false, breaker: false });
  // the client cancelled or ran out of time: whatever the worker said, nobody is to blame
  expect(classifyFailure(grpc.status.UNAVAILABLE, true)).toEqual({ retry: false, breaker: false });
  expect(classifyFailure(grpc.status.CANCELLED, true)).toEqual({ retry: false, breaker: false });
});
