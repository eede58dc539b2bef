/** Kept apart from bench.ts so that `kcache help` does not load the benchmarks. */
export const BENCH_USAGE = `kcache bench engine [--model dummy:smol135] [--dtypes f32,bf16] [--threads N] [--prompt-len 512]
    [--decode-tokens 64] [--batches 8,32] [--no-llama-cpp] [--json]
  kcache bench worker [--model dummy:smol135:bf16] [--streams 1,8,32] [--tokens 64] [--threads N]
  kcache bench routing [--model dummy:smol135:bf16] [--workers 3] [--policies cache_aware,round_robin,...] [--requests 36] [--rate 1]
    [--trace ../shared/traces/mooncake_conversation_trace.jsonl] [--trace-requests 100] [--num-blocks 160]
    [--parts workloads,overhead,decisions,http] [--overhead-model dummy:tiny] [--load-cost-tokens N]
    [--routers 1] [--workloads poisson,saturation,trace]
  kcache bench kcache [--parts fidelity,attention,decode,budget,capacity] [--fidelity-model ../shared/models/stories260K.bin]
    [--fidelity-topn 4,8,16,32,64,128,256]
    [--model dummy:smol135:bf16] [--contexts 1024,4096,16384,32768] [--decode-contexts 2048,4096,8000] [--batches 1,4]
    [--budget-gib 2] [--budget-contexts 4096,8000] [--topn 32,64] [--threads N]
  kcache bench plot [--out docs/img/cluster.svg] [--seconds 30] [--model dummy:smol135:bf16]
  kcache bench faults [--model dummy:tiny] [--cases sigkill,sigstop,redis-restart,poison,overload,drain] [--json]`;
