export { BATCH_URLS, BatchInputError, type BatchOutcome, type BatchRequest, outputLine, parseBatchInput } from './batch/format.js';
export { cacheAwareGroups, fileOrderGroups, promptKey } from './batch/order.js';
export { BATCH_QUEUE, batchStatus, cancelBatch, PRIORITIES, type SubmitOptions, submitBatch } from './batch/queue.js';
export { type BatchRunner, type BatchRunnerOptions, startBatchRunner } from './batch/runner.js';
export { type BatchInfo, type BatchOrder, type BatchPriority, type BatchStatus, BatchStore } from './batch/store.js';
export { evictionWarning } from './eviction.js';
export { parseWarmPrompts, WarmInputError, type WarmPrompt, warmPlan } from './warm/plan.js';
export { type WarmOptions, type WarmResult, warm } from './warm/warm.js';
