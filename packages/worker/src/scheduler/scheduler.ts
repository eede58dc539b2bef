/**
 * Continuous batching (vLLM v1's scheduler, simplified): each step gets a token budget and a cap
 * on running sequences. Running sequences go first (decodes, or the next chunk of a prefill that
 * did not fit before), in arrival order; then waiting requests are admitted first-come first-
 * served, each with as much of its prompt as the budget allows (chunked prefill). A request
 * admitted for the first time reuses the longest cached prefix of its prompt's full blocks,
 * never the block holding the last prompt token (its logits are needed), and takes the blocks
 * for the rest of its prompt at once; where the pool's prefix ends and a lower tier (BlockSource:
 * the worker's offload tiers) continues it, those blocks are copied into the first fresh ones.
 * When a running sequence needs a block and none is left, the most recently arrived running
 * sequence is preempted: its blocks are released and it goes back to the front of the queue to be
 * recomputed (usually from the prefix cache). Pure: the engine loop calls schedule(), runs the
 * step, then commit().
 *
 * Priorities (vLLM's `priority`: lower first; interactive requests are 0, batch work higher): the
 * step is planned one priority class at a time, best first, each class's running sequences then
 * its waiting ones, so a class gets the budget before any worse one, and a step that prefills for
 * a class carries only the decodes of worse classes (their prefill chunks would lengthen the
 * step: the better request's time to first token); while interactive traffic is around, background
 * prefill is capped per step; waiting requests queue in priority order, and a preemption takes a
 * sequence of the worst running class. With one class (the default) this is the plain
 * arrival-order scheduler above.
 */
import { type BlockHash, type HashExtra, hashBlock, promptBlockHashes, ROOT_PARENT } from '@kcache/protocol';
import type { BlockManager } from './block-manager.js';

export interface SchedulerConfig {
  /** Most sequences in one step (running). */
  maxNumSeqs: number;
  /** Most new tokens in one step. */
  maxBatchedTokens: number;
  /**
   * Most prefill tokens of background work (priority > 0) in one step while interactive traffic
   * is around (default: maxBatchedTokens / 32; `serve worker --max-background-prefill-tokens`). A
   * step already running is not interrupted, so an interactive request that arrives meanwhile
   * waits for it: short background steps keep that wait short (docs/BENCHMARKS.md, issue #16:
   * interactive TTFT p99 under a batch 1.1–1.3× of without one at 16 tokens, 1.6–2.2× at 128).
   */
  maxBackgroundPrefillTokens?: number;
  /**
   * Interactive traffic is around while an interactive request (priority ≤ 0) is queued or
   * running, and for this long after the last one arrived (ms; default 10,000). Otherwise
   * background prefill takes the whole budget: a batch alone runs at full speed, and the first
   * interactive request after a quiet spell waits for at most one step, as without priorities.
   */
  interactiveWindowMs?: number;
  /** The clock of that window (ms; default performance.now). */
  now?: () => number;
}

/**
 * Blocks the pool no longer holds but something below it does (the worker's offload tiers): at
 * admission the scheduler continues a device prefix hit with them, copied into fresh pool blocks,
 * instead of recomputing them.
 */
export interface BlockSource {
  /** How many leading `hashes` it can supply. */
  lookup(hashes: readonly BlockHash[]): number;
  /** Writes the leading hashes' blocks into `blocks` (as many); returns how many it wrote, a prefix (a failure ends it). */
  load(hashes: readonly BlockHash[], blocks: readonly number[]): number;
}

export class SchedRequest {
  /** Prompt followed by the tokens generated so far. */
  readonly tokens: number[];
  /** Tokens whose K/V are in the cache. */
  numComputed = 0;
  blockTable: number[] = [];
  /** Hashes of the full blocks computed so far (parents of the next). */
  blockHashes: BlockHash[] = [];
  /** Prompt tokens served from the prefix cache at first admission (device pool and lower tiers). */
  cachedTokens = 0;
  /** Of those, how many were copied back from a lower tier (BlockSource). */
  reloadedTokens = 0;
  admitted = false;
  preemptions = 0;
  /** Lower runs first (0: interactive). */
  priority = 0;

  /** `promptLen` < tokens.length: the rest was generated already (a resumed request). */
  constructor(
    readonly id: string,
    tokens: readonly number[],
    readonly extra: HashExtra,
    readonly arrival: number,
    readonly promptLen: number = tokens.length,
  ) {
    this.tokens = [...tokens];
  }

  get outputLen(): number {
    return this.tokens.length - this.promptLen;
  }
}

export interface StepItem {
  req: SchedRequest;
  startPos: number;
  tokens: number[];
  blockTable: number[];
  /** The chunk reaches the last token: its logits give the next token. */
  sample: boolean;
}

export interface StepPlan {
  items: StepItem[];
  preempted: SchedRequest[];
}

/** What is left of a step while it is planned, class by class. */
interface PlanState {
  budget: number;
  /** False once a waiting request did not fit: nothing after it is admitted. */
  admitting: boolean;
  /** A better class prefills in this step: worse classes only decode. */
  decodesOnly: boolean;
  /** Prefill tokens left for background classes (priority > 0). */
  background: number;
}

export class Scheduler {
  readonly waiting: SchedRequest[] = [];
  readonly running: SchedRequest[] = [];
  private lastInteractive = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly bm: BlockManager,
    readonly config: SchedulerConfig,
    private readonly lower: BlockSource | null = null,
  ) {}

  get blockSize(): number {
    return this.bm.blockSize;
  }

  /** Queues a request behind every waiting one of its priority or better. */
  add(req: SchedRequest): void {
    if (req.priority <= 0) this.lastInteractive = this.now();
    const at = this.waiting.findIndex((w) => w.priority > req.priority);
    if (at < 0) this.waiting.push(req);
    else this.waiting.splice(at, 0, req);
  }

  private now(): number {
    return this.config.now ? this.config.now() : performance.now();
  }

  /** The background prefill cap of the next step: small while interactive traffic is around, else the whole budget. */
  private backgroundCap(): number {
    const c = this.config;
    const around =
      this.now() - this.lastInteractive < (c.interactiveWindowMs ?? 10_000) ||
      this.running.some((r) => r.priority <= 0) ||
      this.waiting.some((r) => r.priority <= 0);
    return around ? (c.maxBackgroundPrefillTokens ?? Math.max(1, Math.floor(c.maxBatchedTokens / 32))) : c.maxBatchedTokens;
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Removes a request wherever it is and frees its blocks. Call between steps. */
  remove(req: SchedRequest): void {
    const w = this.waiting.indexOf(req);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(req);
    if (r >= 0) this.running.splice(r, 1);
    this.freeBlocks(req);
  }

  private freeBlocks(req: SchedRequest): void {
    this.bm.release(req.blockTable);
    req.blockTable = [];
    req.numComputed = 0;
    req.blockHashes = [];
  }

  private blocksFor(req: SchedRequest, n: number): number {
    return Math.ceil((req.numComputed + n) / this.blockSize) - req.blockTable.length;
  }

  private preempt(req: SchedRequest, plan: StepPlan): void {
    this.running.splice(this.running.indexOf(req), 1);
    this.freeBlocks(req);
    req.preemptions++;
    // first of its priority class: it was running before anything of its class now waiting
    const at = this.waiting.findIndex((w) => w.priority >= req.priority);
    if (at < 0) this.waiting.push(req);
    else this.waiting.splice(at, 0, req);
    plan.preempted.push(req);
  }

  private item(req: SchedRequest, n: number): StepItem {
    const start = req.numComputed;
    return {
      req,
      startPos: start,
      tokens: req.tokens.slice(start, start + n),
      blockTable: [...req.blockTable],
      sample: start + n === req.tokens.length,
    };
  }

  schedule(): StepPlan {
    const plan: StepPlan = { items: [], preempted: [] };
    const state = {
      budget: this.config.maxBatchedTokens,
      admitting: true,
      decodesOnly: false,
      background: this.backgroundCap(),
    };
    const scheduled = new Set<SchedRequest>();
    const classes = [...new Set([...this.running, ...this.waiting].map((r) => r.priority))].sort((a, b) => a - b);
    for (const p of classes) {
      if (state.budget === 0) break;
      this.scheduleRunning(p, plan, scheduled, state);
      if (state.admitting && !state.decodesOnly) this.admitWaiting(p, plan, scheduled, state);
      // a step that prefills for a better class carries only decodes of worse ones: their prefill
      // chunks would lengthen the step, and so the better request's time to first token
      if (plan.items.some((it) => it.tokens.length > 1)) state.decodesOnly = true;
    }
    return plan;
  }

  /** Class `p`'s running sequences: their decodes and prefill chunks, preempting the worst class for blocks. */
  private scheduleRunning(p: number, plan: StepPlan, scheduled: Set<SchedRequest>, state: PlanState): void {
    for (const req of this.running.filter((r) => r.priority === p)) {
      const budget = state.budget;
      if (budget === 0) break;
      const prefill = req.tokens.length - req.numComputed > 1;
      if (prefill && (state.decodesOnly || (p > 0 && state.background === 0))) continue;
      if (!this.running.includes(req)) continue; // preempted earlier in this loop
      const n = Math.min(req.tokens.length - req.numComputed, budget, prefill && p > 0 ? state.background : budget);
      const need = this.blocksFor(req, n);
      while (need > this.bm.available) {
        const unscheduled = this.running.filter((r) => !scheduled.has(r));
        const worst = Math.max(...unscheduled.map((r) => r.priority));
        const victim = [...unscheduled].reverse().find((r) => r.priority === worst);
        if (!victim) break;
        this.preempt(victim, plan);
        if (victim === req) break;
      }
      if (!this.running.includes(req) || need > this.bm.available) continue;
      if (need > 0) req.blockTable.push(...(this.bm.allocate(need) as number[]));
      plan.items.push(this.item(req, n));
      scheduled.add(req);
      state.budget -= n;
      if (prefill && p > 0) state.background -= n;
    }
  }

  /**
   * Class `p`'s waiting requests, first come first served while the budget, the sequence cap and
   * the blocks allow; a request that does not fit stops admission for its class and every worse one.
   */
  private admitWaiting(p: number, plan: StepPlan, scheduled: Set<SchedRequest>, state: PlanState): void {
    while (state.budget > 0 && this.running.length < this.config.maxNumSeqs) {
      const budget = state.budget;
      const req = this.waiting[0];
      if (!req || req.priority !== p || (p > 0 && state.background === 0)) break;
      let hit: number[] = [];
      let hitHashes: BlockHash[] = [];
      let below = 0;
      if (req.blockTable.length === 0) {
        hitHashes = promptBlockHashes(req.tokens, this.blockSize, req.extra);
        hit = this.bm.lookup(hitHashes);
        this.bm.acquire(hit);
        req.blockTable = [...hit];
        req.numComputed = hit.length * this.blockSize;
        req.blockHashes = hitHashes.slice(0, hit.length);
        below = this.lower?.lookup(hitHashes.slice(hit.length)) ?? 0;
      }
      // Blocks for the whole prompt are taken at admission, not chunk by chunk: a half-prefilled
      // request never waits for blocks that later admissions took, so admission cannot thrash.
      const need = this.blocksFor(req, req.tokens.length - req.numComputed);
      if (need > this.bm.available) {
        this.freeBlocks(req); // undo the lookup; first come, first served: wait
        state.admitting = false;
        break;
      }
      const fresh = need > 0 ? (this.bm.allocate(need) as number[]) : [];
      req.blockTable.push(...fresh);
      let reloaded = 0;
      if (below > 0 && this.lower) {
        // the prefix continues below the pool: copy those blocks into the first fresh ones
        const hashes = hitHashes.slice(hit.length, hit.length + below);
        reloaded = this.lower.load(hashes, fresh.slice(0, below));
        for (let i = 0; i < reloaded; i++) {
          const b = hit.length + i;
          this.bm.register(fresh[i] as number, hitHashes[b] as BlockHash, b === 0 ? null : (hitHashes[b - 1] as BlockHash));
        }
        req.numComputed += reloaded * this.blockSize;
        req.blockHashes.push(...hashes.slice(0, reloaded));
      }
      if (!req.admitted) {
        req.admitted = true;
        req.cachedTokens = (hit.length + reloaded) * this.blockSize;
        req.reloadedTokens = reloaded * this.blockSize;
      }
      const n = Math.min(req.tokens.length - req.numComputed, budget, p > 0 ? state.background : budget);
      this.waiting.shift();
      this.running.push(req);
      plan.items.push(this.item(req, n));
      scheduled.add(req);
      state.budget -= n;
      if (p > 0) state.background -= n;
    }
  }

  /** After the step ran: the chunks are in the cache; newly full blocks join the prefix cache. */
  commit(plan: StepPlan): void {
    for (const it of plan.items) {
      const req = it.req;
      if (!this.running.includes(req)) continue; // removed while the step ran
      req.numComputed = it.startPos + it.tokens.length;
      while ((req.blockHashes.length + 1) * this.blockSize <= req.numComputed) {
        const b = req.blockHashes.length;
        const parent = b === 0 ? ROOT_PARENT : (req.blockHashes[b - 1] as BlockHash);
        const hash = hashBlock(parent, req.tokens.slice(b * this.blockSize, (b + 1) * this.blockSize), req.extra);
        this.bm.register(req.blockTable[b] as number, hash, b === 0 ? null : parent);
        req.blockHashes.push(hash);
      }
    }
  }

  /** Appends a sampled token to a running request. */
  append(req: SchedRequest, token: number): void {
    req.tokens.push(token);
  }

  /** The request is done: frees its blocks (full ones stay cached). */
  finish(req: SchedRequest): void {
    this.remove(req);
  }
}
