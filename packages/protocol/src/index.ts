export { type BlockHash, extraKey, type HashExtra, hashBlock, hashBlocks, ROOT_PARENT } from './block-hash.js';
export { cacheableTokens, DEFAULT_BLOCK_SIZE, promptBlockHashes } from './blocks.js';
export type { ChatMessage, ChatMessage__Output } from './generated/kcache/v1/ChatMessage.js';
export type { Chunk, Chunk__Output } from './generated/kcache/v1/Chunk.js';
export type { FetchBlocksResponse, FetchBlocksResponse__Output } from './generated/kcache/v1/FetchBlocksResponse.js';
export type { Final, Final__Output } from './generated/kcache/v1/Final.js';
export type { GenerateClient, GenerateHandlers } from './generated/kcache/v1/Generate.js';
export type { GenerateRequest, GenerateRequest__Output } from './generated/kcache/v1/GenerateRequest.js';
export type { GenerateResponse, GenerateResponse__Output } from './generated/kcache/v1/GenerateResponse.js';
export type { InfoResponse, InfoResponse__Output } from './generated/kcache/v1/InfoResponse.js';
export type { ListModelsResponse, ListModelsResponse__Output } from './generated/kcache/v1/ListModelsResponse.js';
export type { Logprobs, Logprobs__Output } from './generated/kcache/v1/Logprobs.js';
export type { SamplingParams, SamplingParams__Output } from './generated/kcache/v1/SamplingParams.js';
export type { SnapshotResponse, SnapshotResponse__Output } from './generated/kcache/v1/SnapshotResponse.js';
export type { StopConditions, StopConditions__Output } from './generated/kcache/v1/StopConditions.js';
export type { TokenizeResponse, TokenizeResponse__Output } from './generated/kcache/v1/TokenizeResponse.js';
export type { Usage, Usage__Output } from './generated/kcache/v1/Usage.js';
export type { WorkerClient, WorkerHandlers } from './generated/kcache/v1/Worker.js';
export type { WorkerGenerateRequest, WorkerGenerateRequest__Output } from './generated/kcache/v1/WorkerGenerateRequest.js';
export type { WorkerGenerateResponse, WorkerGenerateResponse__Output } from './generated/kcache/v1/WorkerGenerateResponse.js';
export {
  fetchSnapshot,
  LOADER_OPTIONS,
  PROTO_ROOT,
  PUBLIC_SERVICE,
  protos,
  ROUTER_METADATA,
  WORKER_SERVICE,
  type WorkerSnapshot,
} from './grpc.js';
export {
  BATCHES_SET,
  BULLMQ_PREFIX,
  batchKey,
  batchRequestsKey,
  batchResultsKey,
  blocksKey,
  cursorKey,
  decodeKvEvent,
  encodeKvEvent,
  encodeLease,
  fileKey,
  IDLE_LOAD,
  INDEXED_SET,
  type KvEvent,
  type KvEventEntry,
  kvStreamKey,
  leaseKey,
  type OffloadTier,
  parseLease,
  parseTier,
  TIERS,
  type Tier,
  UPKEEP_KEY,
  WORKERS_SET,
  type WorkerLease,
  type WorkerLoad,
} from './redis.js';
export { type ClusterTls, ClusterTlsError, loadClusterTls, workerChannelCredentials, workerServerCredentials } from './tls.js';
