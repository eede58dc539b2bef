/** The batch runner's Prometheus metrics: batch requests it finished, and what index upkeep found. */
import { processRegistry } from '@kcache/metrics';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { UpkeepResult } from './upkeep/upkeep.js';

export class JobsMetrics {
  readonly registry: Registry;
  readonly batchRequests: Counter<'outcome'>;
  readonly indexBlocks: Gauge;
  readonly indexLiveWorkers: Gauge;
  readonly drift: Counter<'kind'>;
  readonly purged: Counter;
  readonly lastUpkeep: Gauge;

  constructor(runnerId: string) {
    this.registry = processRegistry({ batch_runner: runnerId });
    const r = [this.registry];
    this.batchRequests = new Counter({
      name: 'kcache_batch_requests_total',
      help: 'Batch requests this runner finished, by outcome (completed: a 2xx answer; failed: any other)',
      labelNames: ['outcome'],
      registers: r,
    });
    this.indexBlocks = new Gauge({
      name: 'kcache_index_blocks',
      help: 'Blocks the index holds for live workers (last upkeep)',
      registers: r,
    });
    this.indexLiveWorkers = new Gauge({ name: 'kcache_index_live_workers', help: 'Workers with a live lease (last upkeep)', registers: r });
    this.drift = new Counter({
      name: 'kcache_index_drift_blocks_total',
      help: "Blocks upkeep found the index lacking (missing), holding in excess (extra) or in the wrong tier (misplaced) against the workers' snapshots, and repaired",
      labelNames: ['kind'],
      registers: r,
    });
    this.purged = new Counter({ name: 'kcache_index_workers_purged_total', help: 'Dead workers whose keys upkeep deleted', registers: r });
    this.lastUpkeep = new Gauge({
      name: 'kcache_index_upkeep_last_run_timestamp_seconds',
      help: 'When this runner last ran upkeep',
      registers: r,
    });
  }

  upkeep(u: UpkeepResult): void {
    this.indexBlocks.set(u.indexBlocks);
    this.indexLiveWorkers.set(u.liveWorkers);
    this.drift.inc({ kind: 'missing' }, u.missing);
    this.drift.inc({ kind: 'extra' }, u.extra);
    this.drift.inc({ kind: 'misplaced' }, u.misplaced);
    this.purged.inc(u.purged.length);
    this.lastUpkeep.set(Date.now() / 1000);
  }
}
