/** The worker's Prometheus metrics: vLLM's vocabulary with the kcache_ prefix. */
import { processRegistry, REQUEST_LATENCY_BUCKETS } from '@kcache/metrics';
import { IDLE_LOAD, type WorkerLoad } from '@kcache/protocol';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { OffloadObserver } from './offload/engine-offload.js';
import type { TierObserver } from './offload/tiers.js';
import type { PeerFetchObserver } from './peer-fetch/peer-fetch.js';

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
  /** Prompt tokens served from cache, by the tier they came from (the pool's tier, or an offload tier). */
  readonly hitsByTier: Counter;
  readonly offloadedBlocks: Counter;
  readonly reloadedBlocks: Counter;
  readonly offloadCorrupt: Counter;
  readonly offloadDropped: Counter;
  readonly offloadCopyOut: Histogram;
  readonly offloadReload: Histogram;
  /** Blocks this worker sent to peers (FetchBlocks). */
  readonly peerServedBlocks: Counter;
  readonly peerFetches: Counter;
  readonly peerFetchBlocks: Counter;
  readonly peerFetchBytes: Counter;
  readonly peerFetchSeconds: Histogram;
  private offloadStats: () => Record<string, { blocks: number; bytes: number; capacityBlocks: number }> = () => ({});

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
    const c = (name: string, help: string, labelNames: string[] = []) => new Counter({ name, help, labelNames, registers: r });
    this.hitsByTier = c(
      'kcache_prefix_cache_hits_by_tier_total',
      'Prompt tokens served from cache, by tier: the KV pool (device, or host with KCache), an offload tier, or a peer',
      ['tier'],
    );
    this.offloadedBlocks = c(
      'kcache_offload_stored_blocks_total',
      'Blocks moved into an offload tier (evicted from the pool to offload_ram, or from offload_ram to offload_disk)',
      ['tier'],
    );
    this.reloadedBlocks = c(
      'kcache_offload_reloaded_blocks_total',
      'Blocks copied back from an offload tier into the KV pool instead of recomputed',
      ['tier'],
    );
    this.offloadCorrupt = c(
      'kcache_offload_corrupt_blocks_total',
      'Disk-tier blocks that failed their check (corrupt, truncated, missing): recomputed',
    );
    this.offloadDropped = c('kcache_offload_dropped_blocks_total', 'Blocks that fell off the last offload tier');
    this.offloadCopyOut = h(
      'kcache_offload_copy_out_seconds',
      'Time to copy evicted blocks out of the pool into the offload tiers',
      STEP_BUCKETS,
    );
    this.offloadReload = h('kcache_offload_reload_seconds', "Time to copy a request's blocks back from the offload tiers", STEP_BUCKETS);
    this.peerServedBlocks = c('kcache_peer_served_blocks_total', 'KV blocks this worker streamed to peers (FetchBlocks)');
    this.peerFetches = c(
      'kcache_peer_fetch_requests_total',
      'Requests that came with a peer hint, by what happened: fetched, partial, failed (computed instead), held_here, prefill_cheaper, peer_backoff (the peer failed moments ago)',
      ['outcome'],
    );
    this.peerFetchBlocks = c('kcache_peer_fetch_blocks_total', 'KV blocks pulled from peers into the pool');
    this.peerFetchBytes = c('kcache_peer_fetch_bytes_total', 'Bytes of KV blocks pulled from peers');
    this.peerFetchSeconds = h(
      'kcache_peer_fetch_seconds',
      "Time to pull a request's blocks from a peer and place them in the pool",
      STEP_BUCKETS,
    );
    const tierGauge = (name: string, help: string, pick: (t: { blocks: number; bytes: number; capacityBlocks: number }) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['tier'],
        registers: r,
        collect() {
          for (const [tier, st] of Object.entries(metrics.offloadStats())) this.set({ tier }, pick(st));
        },
      });
    tierGauge('kcache_offload_blocks', 'Blocks held in each offload tier', (t) => t.blocks);
    tierGauge('kcache_offload_bytes', 'Bytes held in each offload tier', (t) => t.bytes);
    tierGauge('kcache_offload_capacity_blocks', 'Capacity of each offload tier in blocks', (t) => t.capacityBlocks);
  }

  /** Counts the offload tiers' moves. */
  tierObserver(): TierObserver {
    return {
      stored: (tier, n) => this.offloadedBlocks.inc({ tier }, n),
      corrupt: (n) => this.offloadCorrupt.inc(n),
      dropped: (n) => this.offloadDropped.inc(n),
    };
  }

  /** Counts the copies between the pool and the offload tiers. */
  offloadObserver(): OffloadObserver {
    return {
      reloaded: (tier, n, tokens) => {
        this.reloadedBlocks.inc({ tier }, n);
        this.hitsByTier.inc({ tier }, tokens);
      },
      copyOutSeconds: (s) => this.offloadCopyOut.observe(s),
      reloadSeconds: (s) => this.offloadReload.observe(s),
    };
  }

  /** Counts peer fetches. */
  peerFetchObserver(): PeerFetchObserver {
    return {
      outcome: (outcome) => this.peerFetches.inc({ outcome }),
      fetched: (blocks, bytes, tokens, seconds) => {
        this.peerFetchBlocks.inc(blocks);
        this.peerFetchBytes.inc(bytes);
        this.hitsByTier.inc({ tier: 'peer' }, tokens);
        this.peerFetchSeconds.observe(seconds);
      },
    };
  }

  /** Where the offload tier gauges read from. */
  observeOffload(stats: () => Record<string, { blocks: number; bytes: number; capacityBlocks: number }>): void {
    this.offloadStats = stats;
  }

  /** Where the load gauges read from (the serving loop), and the KV tiers to report usage for. */
  observe(load: () => WorkerLoad, tiers: readonly string[]): void {
    this.load = load;
    this.tiers = tiers;
  }
}
