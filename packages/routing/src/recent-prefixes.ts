/**
 * The prefixes this router sent where, recently (SGLang's approximate radix tree, flattened to
 * block hashes). The block index only learns a block once a worker has computed it; requests
 * that arrive while their shared prefix is still being prefilled would otherwise scatter. A
 * router therefore also counts, per worker, the leading blocks of a request that it recently
 * routed there. Bounded: the least recently routed hashes are forgotten first.
 */
export class RecentPrefixes {
  private readonly owner = new Map<string, string>();

  constructor(private readonly capacity = 200_000) {}

  record(hashes: readonly string[], worker: string): void {
    for (const h of hashes) {
      this.owner.delete(h);
      this.owner.set(h, worker);
    }
    while (this.owner.size > this.capacity) this.owner.delete(this.owner.keys().next().value as string);
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
  }
}
