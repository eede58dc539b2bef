export { decodeWeightBytes, type EngineBenchOptions, type EngineBenchResult, formatEngineBench, runEngineBench } from './engine-bench.js';
export { writeGguf } from './gguf.js';
export { formatWorkerBench, runWorkerBench, type WorkerBenchOptions, type WorkerBenchRow } from './worker-bench.js';
