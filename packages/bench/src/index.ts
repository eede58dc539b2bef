export { type BatchBenchOptions, type BatchBenchResult, formatBatchBench, runBatchBench } from './batch-bench.js';
export {
  formatOffloadReplay,
  formatReload,
  formatSpill,
  measureOffloadReplay,
  measureReload,
  measureSpill,
  tierCredit,
} from './cache-tiers-bench.js';
export { parseMetrics, renderClusterPlot, sumOf } from './cluster-plot.js';
export { decodeWeightBytes, type EngineBenchOptions, type EngineBenchResult, formatEngineBench, runEngineBench } from './engine-bench.js';
export {
  FAULT_CASES,
  type FaultCase,
  type FaultRow,
  type FaultsBenchOptions,
  formatFaultsBench,
  percentile,
  runFaultsBench,
  STALL_MS,
  type StreamResult,
  stream,
  tally,
} from './faults-bench.js';
export { writeGguf } from './gguf.js';
export {
  type AttentionRow,
  type BudgetRow,
  type CapacityRow,
  capacity,
  type DecodeRow,
  type FidelityConfig,
  type FidelityRow,
  formatAttention,
  formatBudget,
  formatCapacity,
  formatDecode,
  formatFidelity,
  measureAttention,
  measureBudgetDecode,
  measureDecode,
  measureFidelity,
} from './kcache-bench.js';
export { formatKvDtypeBench, type KvDtypeBenchOptions, type KvDtypeBenchResult, runKvDtypeBench } from './kv-dtype-bench.js';
export { type LocalCluster, startLocalCluster } from './local-cluster.js';
export { formatRoutingBench, type PolicyResult, type RoutingBenchOptions, runRoutingBench } from './routing-bench.js';
export {
  formatSamplingBench,
  runSamplingBench,
  SAMPLING_SETTINGS,
  type SamplingBenchOptions,
  type SamplingBenchResult,
  type SamplingBenchRow,
} from './sampling-bench.js';
export { formatWorkerBench, runWorkerBench, type WorkerBenchOptions, type WorkerBenchRow } from './worker-bench.js';
export { type BenchRequest, mooncakeWorkload, oracleHitRate, sharedPrefixWorkload } from './workloads.js';
