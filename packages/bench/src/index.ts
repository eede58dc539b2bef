export { decodeWeightBytes, type EngineBenchOptions, type EngineBenchResult, formatEngineBench, runEngineBench } from './engine-bench.js';
export { writeGguf } from './gguf.js';
export { formatWorkerBench, runWorkerBench, type WorkerBenchOptions, type WorkerBenchRow } from './worker-bench.js';
export { runRoutingBench, formatRoutingBench, type RoutingBenchOptions, type PolicyResult } from './routing-bench.js';
export { sharedPrefixWorkload, mooncakeWorkload, oracleHitRate, type BenchRequest } from './workloads.js';
