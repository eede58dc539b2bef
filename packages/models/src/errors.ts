/** A model could not be loaded: the message names the file (or model reference) and the problem. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}
