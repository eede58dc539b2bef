/**
 * Mid-stream migration (NVIDIA Dynamo's): when the worker serving a stream fails after some tokens,
 * the router resumes the request on another worker with the prompt followed by the tokens the
 * client already has. The worker treats those as output it generated itself (resume_generated):
 * max and min tokens, penalties, the seeded RNG and stop strings carry on, so the client sees one
 * stream, token for token what it would have been without the fault.
 */
import type { WorkerGenerateRequest } from '@kcache/protocol';
import type { StreamProgress } from './forward.js';

/** The request that continues `original` after what `progress` says the client has received. */
export function continuation(
  original: WorkerGenerateRequest & { tokenIds: number[] },
  progress: StreamProgress,
): WorkerGenerateRequest & { tokenIds: number[] } {
  if (progress.tokens.length === 0) return original;
  return {
    ...original,
    tokenIds: [...original.tokenIds, ...progress.tokens],
    resumeGenerated: progress.tokens.length,
    resumeTextLen: progress.textLen,
  };
}
