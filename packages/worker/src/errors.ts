/** A request the worker refuses; `code` maps to the gRPC status, the message names the field. */
export class WorkerError extends Error {
  override readonly name = 'WorkerError';
  constructor(
    readonly code: 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED' | 'ALREADY_EXISTS' | 'UNAVAILABLE',
    message: string,
  ) {
    super(message);
  }
}
