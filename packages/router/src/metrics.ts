/** The router's Prometheus metrics. */
import { processRegistry, REQUEST_LATENCY_BUCKETS } from '@kcache/metrics';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { WorkerPool } from './pool.js';

export class RouterMetrics {
  readonly registry: Registry;
  /** Read at every scrape, so per-worker gauges are current (a closed breaker reads 0). */
  private pool: WorkerPool | null = null;
  readonly decisions: Counter;
  readonly lookupLatency: Histogram;
  readonly predictedCached: Counter;
  readonly actualCached: Counter;
  readonly cacheMisprediction: Histogram;
  readonly workerLoad: Gauge;
  readonly retries: Counter;
  readonly migrations: Counter;
  readonly timeouts: Counter;
  readonly connectionsLost: Counter;
  readonly breakerState: Gauge;
  readonly requests: Counter;
  readonly ttft: Histogram;
  readonly redisUp: Gauge;
  readonly liveWorkers: Gauge;

  constructor(routerId: string) {
    this.registry = processRegistry({ router: routerId });
    const r = [this.registry];
    const metrics = this;
    this.decisions = new Counter({
      name: 'kcache_router_decisions_total',
      help: 'Routing decisions by policy and reason',
      labelNames: ['policy', 'reason'],
      registers: r,
    });
    this.lookupLatency = new Histogram({
      name: 'kcache_router_index_lookup_seconds',
      help: 'Block index lookup latency',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: r,
    });
    this.predictedCached = new Counter({
      name: 'kcache_router_predicted_cached_tokens_total',
      help: 'Cached prompt tokens the index predicted on the chosen worker',
      registers: r,
    });
    this.actualCached = new Counter({
      name: 'kcache_router_actual_cached_tokens_total',
      help: 'Cached prompt tokens the chosen worker reported',
      registers: r,
    });
    this.cacheMisprediction = new Histogram({
      name: 'kcache_router_cached_tokens_error',
      help: 'Actual minus predicted cached tokens per request',
      buckets: [-256, -64, -16, -1, 0, 1, 16, 64, 256],
      registers: r,
    });
    this.workerLoad = new Gauge({
      name: 'kcache_router_worker_load',
      help: 'Requests this router has in flight per worker',
      labelNames: ['worker'],
      registers: r,
      collect() {
        this.reset();
        for (const w of metrics.pool?.all() ?? []) this.set({ worker: w.lease.workerId }, w.inFlight);
      },
    });
    this.retries = new Counter({
      name: 'kcache_router_retries_total',
      help: 'Requests retried on another worker',
      labelNames: ['cause'],
      registers: r,
    });
    this.migrations = new Counter({
      name: 'kcache_router_migrations_total',
      help: 'Streams resumed on another worker after theirs failed mid-stream',
      labelNames: ['cause'],
      registers: r,
    });
    this.timeouts = new Counter({
      name: 'kcache_router_worker_timeouts_total',
      help: 'Attempts given up because the worker sent nothing for too long, by phase',
      labelNames: ['phase'],
      registers: r,
    });
    this.connectionsLost = new Counter({
      name: 'kcache_router_worker_connections_lost_total',
      help: 'Ready worker connections that dropped (the worker died, froze past the keepalive timeout, or went away)',
      labelNames: ['worker'],
      registers: r,
    });
    this.breakerState = new Gauge({
      name: 'kcache_router_breaker_open',
      help: '1 while a worker circuit breaker is open or half-open',
      labelNames: ['worker'],
      registers: r,
      collect() {
        this.reset();
        for (const w of metrics.pool?.all() ?? []) this.set({ worker: w.lease.workerId }, w.breaker.state === 'closed' ? 0 : 1);
      },
    });
    this.requests = new Counter({
      name: 'kcache_router_requests_total',
      help: 'Requests finished by outcome',
      labelNames: ['outcome'],
      registers: r,
    });
    this.ttft = new Histogram({
      name: 'kcache_router_time_to_first_token_seconds',
      help: 'Time from the request reaching the router to its first token',
      buckets: REQUEST_LATENCY_BUCKETS,
      registers: r,
    });
    this.redisUp = new Gauge({
      name: 'kcache_router_redis_up',
      help: '1 while the router reads the block index and leases from Redis, 0 while it routes without it',
      registers: r,
    });
    this.liveWorkers = new Gauge({ name: 'kcache_router_live_workers', help: 'Workers with a live lease', registers: r });
    this.redisUp.set(0);
    this.liveWorkers.set(0);
  }

  /** The pool the per-worker gauges read. */
  observe(pool: WorkerPool): void {
    this.pool = pool;
  }
}
