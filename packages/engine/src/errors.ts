/** A step's input was rejected before any work was done; the message names the field. */
export class InvalidStepError extends Error {
  override readonly name = 'InvalidStepError';
}
