export { decodeWeightBytes, type EngineBenchOptions, type EngineBenchResult, formatEngineBench, runEngineBench } from './engine-bench.js';
export { writeGguf } from './gguf.js';
export { formatRoutingBench, type PolicyResult, type RoutingBenchOptions, runRoutingBench } from './routing-bench.js';
export { formatWorkerBench, runWorkerBench, type WorkerBenchOptions, type WorkerBenchRow } from './worker-bench.js';
export { type BenchRequest, mooncakeWorkload, oracleHitRate, sharedPrefixWorkload } from './workloads.js';
