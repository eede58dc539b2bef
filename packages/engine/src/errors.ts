/** A model could not be loaded: the message names the file (or model reference) and the problem. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}

/** A step's input was rejected before any work was done; the message names the field. */
export class InvalidStepError extends Error {
  override readonly name = 'InvalidStepError';
}
