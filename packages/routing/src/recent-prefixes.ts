/**
 * The prefixes this router sent where, recently (SGLang's approximate radix tree, flattened to
 * block hashes). The block index only learns a block once a worker has computed it; requests
 * that arrive while their shared prefix is still being prefilled would otherwise scatter. A
 * router therefore also counts, per worker, the leading blocks of a request that it recently
 * routed there. Bounded: the least recently routed hashes are forgotten first. It also counts the
 * blocks it remembers per worker: a fresh lower bound of each worker's cache occupancy between
 * the workers' own (periodic) reports.
 */
export class RecentPrefixes {
  private readonly owner = new Map<string, string>();
  private readonly perWorker = new Map<string, number>();

  constructor(private readonly capacity = 200_000) {}

  record(hashes: readonly string[], worker: string): void {
    for (const h of hashes) {
      this.drop(h);
      this.owner.set(h, worker);
      this.perWorker.set(worker, (this.perWorker.get(worker) ?? 0) + 1);
    }
    while (this.owner.size > this.capacity) this.drop(this.owner.keys().next().value as string);
  }

  /** Blocks remembered as last routed to `worker`. */
  blocksOf(worker: string): number {
    return this.perWorker.get(worker) ?? 0;
  }

  private drop(h: string): void {
    const w = this.owner.get(h);
    if (w === undefined) return;
    this.owner.delete(h);
    this.perWorker.set(w, (this.perWorker.get(w) as number) - 1);
  }

  /** Leading blocks of `hashes` last routed to each worker. */
  match(hashes: readonly string[]): Map<string, number> {
    const out = new Map<string, number>();
    const first = hashes[0] === undefined ? undefined : this.owner.get(hashes[0]);
    if (first === undefined) return out;
    let n = 0;
    while (n < hashes.length && this.owner.get(hashes[n] as string) === first) n++;
    out.set(first, n);
    return out;
  }

  forgetWorker(worker: string): void {
    for (const [h, w] of this.owner) if (w === worker) this.owner.delete(h);
    this.perWorker.delete(worker);
  }
}
