/** The worker's Prometheus metrics: vLLM's vocabulary with the kcache_ prefix. */
import { processRegistry, REQUEST_LATENCY_BUCKETS } from '@kcache/metrics';
import { IDLE_LOAD, type WorkerLoad } from '@kcache/protocol';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const STEP_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

export class WorkerMetrics {
  readonly registry: Registry;
  /** Read at every scrape: the gauges are the loop's state now, from the first scrape on. */
  private load: () => WorkerLoad = () => IDLE_LOAD;
  private tiers: readonly string[] = ['device'];
  readonly ttft: Histogram;
  readonly itl: Histogram;
  readonly e2e: Histogram;
  readonly queueTime: Histogram;
  readonly stepDuration: Histogram;
  readonly running: Gauge;
  readonly waiting: Gauge;
  readonly kvUsage: Gauge;
  readonly prefixQueries: Counter;
  readonly prefixHits: Counter;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly preemptions: Counter;
  readonly success: Counter;

  constructor(workerId: string, modelId: string) {
    this.registry = processRegistry({ worker: workerId, model: modelId });
    const r = [this.registry];
    const h = (name: string, help: string, buckets = REQUEST_LATENCY_BUCKETS) => new Histogram({ name, help, buckets, registers: r });
    const metrics = this;
    this.ttft = h('kcache_time_to_first_token_seconds', 'Time from arrival to the first generated token');
    this.itl = h('kcache_inter_token_latency_seconds', 'Time between consecutive generated tokens of a request');
    this.e2e = h('kcache_e2e_request_latency_seconds', 'Time from arrival to the final token');
    this.queueTime = h('kcache_request_queue_time_seconds', 'Time a request waited before its first step');
    this.stepDuration = h('kcache_engine_step_duration_seconds', 'Duration of one batched engine step', STEP_BUCKETS);
    this.running = new Gauge({
      name: 'kcache_num_requests_running',
      help: 'Requests in the running batch',
      registers: r,
      collect() {
        this.set(metrics.load().running);
      },
    });
    this.waiting = new Gauge({
      name: 'kcache_num_requests_waiting',
      help: 'Requests waiting to be scheduled',
      registers: r,
      collect() {
        this.set(metrics.load().waiting);
      },
    });
    this.kvUsage = new Gauge({
      name: 'kcache_kv_cache_usage_perc',
      help: 'Fraction of KV blocks in use, per tier (0-1)',
      labelNames: ['tier'],
      registers: r,
      collect() {
        const usage = metrics.load().kvUsage;
        for (const tier of metrics.tiers) this.set({ tier }, usage);
      },
    });
    this.prefixQueries = new Counter({
      name: 'kcache_prefix_cache_queries_total',
      help: 'Prompt tokens looked up in the prefix cache',
      registers: r,
    });
    this.prefixHits = new Counter({
      name: 'kcache_prefix_cache_hits_total',
      help: 'Prompt tokens served from the prefix cache',
      registers: r,
    });
    this.promptTokens = new Counter({ name: 'kcache_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers: r });
    this.generationTokens = new Counter({ name: 'kcache_generation_tokens_total', help: 'Generated tokens', registers: r });
    this.preemptions = new Counter({
      name: 'kcache_num_preemptions_total',
      help: 'Sequences preempted for lack of KV blocks',
      registers: r,
    });
    this.success = new Counter({
      name: 'kcache_request_success_total',
      help: 'Finished requests by finish reason',
      labelNames: ['finished_reason'],
      registers: r,
    });
  }

  /** Where the load gauges read from (the serving loop), and the KV tiers to report usage for. */
  observe(load: () => WorkerLoad, tiers: readonly string[]): void {
    this.load = load;
    this.tiers = tiers;
  }
}
