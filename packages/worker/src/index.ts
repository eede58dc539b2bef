export { EngineLoop, type FinishReason, type GenerateInput, type StreamSink, type Usage } from './engine-loop.js';
export { WorkerError } from './errors.js';
export { KvEventPublisher, type PublisherOptions, WorkerIdInUseError } from './kv-events/publisher.js';
export { WorkerMetrics } from './metrics.js';
export { EngineOffload, type OffloadObserver } from './offload/engine-offload.js';
export { type BlockCopy, type OffloadOptions, OffloadTiers } from './offload/tiers.js';
export { BlockManager, type KvEvent, type Tier } from './scheduler/block-manager.js';
export { type BlockSource, SchedRequest, Scheduler, type SchedulerConfig } from './scheduler/scheduler.js';
export { type RunningWorker, startWorker, type WorkerOptions, WorkerStartError } from './service/worker-server.js';
