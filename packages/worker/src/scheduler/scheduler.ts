/**
 * Continuous batching (vLLM v1's scheduler, simplified): each step gets a token budget and a cap
 * on running sequences. Running sequences go first (decodes, or the next chunk of a prefill that
 * did not fit before), in arrival order; then waiting requests are admitted first-come first-
 * served, each with as much of its prompt as the budget allows (chunked prefill). A request
 * admitted for the first time reuses the longest cached prefix of its prompt's full blocks,
 * never the block holding the last prompt token (its logits are needed), and takes the blocks
 * for the rest of its prompt at once. When a running
 * sequence needs a block and none is left, the most recently arrived running sequence is
 * preempted: its blocks are released and it goes back to the front of the queue to be
 * recomputed (usually from the prefix cache). Pure: the engine loop calls schedule(), runs the
 * step, then commit().
 */
import { type BlockHash, type HashExtra, hashBlock, promptBlockHashes, ROOT_PARENT } from '@kcache/protocol';
import type { BlockManager } from './block-manager.js';

export interface SchedulerConfig {
  /** Most sequences in one step (running). */
  maxNumSeqs: number;
  /** Most new tokens in one step. */
  maxBatchedTokens: number;
}

export class SchedRequest {
  /** Prompt followed by the tokens generated so far. */
  readonly tokens: number[];
  /** Tokens whose K/V are in the cache. */
  numComputed = 0;
  blockTable: number[] = [];
  /** Hashes of the full blocks computed so far (parents of the next). */
  blockHashes: BlockHash[] = [];
  /** Prompt tokens served from the prefix cache at first admission. */
  cachedTokens = 0;
  admitted = false;
  preemptions = 0;

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

export class Scheduler {
  readonly waiting: SchedRequest[] = [];
  readonly running: SchedRequest[] = [];

  constructor(
    private readonly bm: BlockManager,
    readonly config: SchedulerConfig,
  ) {}

  get blockSize(): number {
    return this.bm.blockSize;
  }

  add(req: SchedRequest): void {
    this.waiting.push(req);
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
    this.waiting.unshift(req);
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
    let budget = this.config.maxBatchedTokens;
    const scheduled = new Set<SchedRequest>();

    for (const req of [...this.running]) {
      if (budget === 0) break;
      if (!this.running.includes(req)) continue; // preempted earlier in this loop
      const n = Math.min(req.tokens.length - req.numComputed, budget);
      const need = this.blocksFor(req, n);
      while (need > this.bm.available) {
        const victim = [...this.running].reverse().find((r) => !scheduled.has(r));
        if (!victim) break;
        this.preempt(victim, plan);
        if (victim === req) break;
      }
      if (!this.running.includes(req) || need > this.bm.available) continue;
      if (need > 0) req.blockTable.push(...(this.bm.allocate(need) as number[]));
      plan.items.push(this.item(req, n));
      scheduled.add(req);
      budget -= n;
    }

    while (this.waiting.length > 0 && budget > 0 && this.running.length < this.config.maxNumSeqs) {
      const req = this.waiting[0] as SchedRequest;
      let hit: number[] = [];
      let hitHashes: BlockHash[] = [];
      if (req.blockTable.length === 0) {
        hitHashes = promptBlockHashes(req.tokens, this.blockSize, req.extra);
        hit = this.bm.lookup(hitHashes);
        this.bm.acquire(hit);
        req.blockTable = hit;
        req.numComputed = hit.length * this.blockSize;
        req.blockHashes = hitHashes.slice(0, hit.length);
      }
      const n = Math.min(req.tokens.length - req.numComputed, budget);
      // Blocks for the whole prompt are taken at admission, not chunk by chunk: a half-prefilled
      // request never waits for blocks that later admissions took, so admission cannot thrash.
      const need = this.blocksFor(req, req.tokens.length - req.numComputed);
      if (need > this.bm.available) {
        this.freeBlocks(req); // undo the lookup; first come, first served: wait
        break;
      }
      if (!req.admitted) {
        req.admitted = true;
        req.cachedTokens = hit.length * this.blockSize;
      }
      if (need > 0) req.blockTable.push(...(this.bm.allocate(need) as number[]));
      this.waiting.shift();
      this.running.push(req);
      plan.items.push(this.item(req, n));
      scheduled.add(req);
      budget -= n;
    }
    return plan;
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
