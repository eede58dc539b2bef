/**
 * Peer fetch (Mooncake's transfer instead of recompute): a request arrives with the router's hint
 * that another worker of the cluster holds the first `blocks` blocks of its prompt (a spill of a
 * hot prefix, or a worker that just joined). Before the request is queued, this worker pulls the
 * blocks it lacks from that peer (FetchBlocks, over the cluster's mutual TLS when configured),
 * checks each block's CRC-32 and hash, and puts them into its pool as cached blocks, so admission
 * finds them like any prefix hit. Only the request that needs the blocks waits for them; others
 * keep running. The fetch is bounded in bytes and time, and any failure (peer gone mid-stream,
 * timeout, refusal) keeps what arrived intact and computes the rest: never a failed request.
 *
 * Whether to fetch is a cost comparison: the transfer's expected time (measured throughput of past
 * fetches) against prefilling the same tokens (measured on this worker's steps); until both are
 * measured it fetches.
 */

import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import {
  type BlockHash,
  type ClusterTls,
  type FetchBlocksResponse__Output,
  promptBlockHashes,
  protos,
  type WorkerClient,
  workerChannelCredentials,
} from '@kcache/protocol';

/** The pool layout blocks must share to be copied between workers. */
export interface BlockLayout {
  modelId: string;
  blockSize: number;
  kvDtype: string;
  bytesPerBlock: number;
}

export interface PeerHint {
  address: string;
  workerId: string;
  /** Leading blocks of the prompt the peer holds (the router's index). */
  blocks: number;
}

export interface FetchedBlock {
  hash: BlockHash;
  parent: BlockHash | null;
  data: Uint8Array;
}

export type FetchOutcome = 'fetched' | 'partial' | 'failed' | 'held_here' | 'prefill_cheaper' | 'peer_backoff';

export interface PeerFetchObserver {
  outcome(o: FetchOutcome): void;
  fetched(blocks: number, bytes: number, tokens: number, seconds: number): void;
}

export interface PeerFetchOptions {
  layout: BlockLayout;
  /** This worker's id (sent to the peer for its log). */
  workerId: string;
  tls: ClusterTls | null;
  /** Longest a fetch may take before what arrived is used and the rest computed (default 2 s). */
  timeoutMs?: number;
  /** Most bytes one fetch may bring (default 256 MiB). */
  maxBytes?: number;
  /** How long to wait for a connection to the peer before giving up on it (default 300 ms). */
  connectTimeoutMs?: number;
  /** After a peer failed, how long it is not asked again (default 5 s): a peer that cannot be reached costs one wait, not one per request. */
  backoffMs?: number;
  /** How many leading hashes this worker holds already (pool or offload tiers). */
  heldHere: (hashes: readonly BlockHash[]) => number;
  /** Puts fetched blocks into the pool after the prompt's `prefix` held here (between steps); resolves with how many it placed. */
  install: (blocks: FetchedBlock[], prefix: BlockHash[]) => Promise<number>;
  /** Measured seconds per prefill token on this worker (null: not yet). */
  prefillSecondsPerToken: () => number | null;
  observer?: PeerFetchObserver;
}

/**
 * Whether fetching `bytes` is expected to beat prefilling `tokens`: unknown figures mean yes (the
 * first fetch measures the link); a fixed per-call overhead covers the round trip and the copy in.
 */
export function fetchWorthIt(o: {
  tokens: number;
  bytes: number;
  prefillSecondsPerToken: number | null;
  fetchBytesPerSecond: number | null;
  overheadSeconds?: number;
}): boolean {
  if (o.prefillSecondsPerToken === null || o.fetchBytesPerSecond === null) return true;
  return (o.overheadSeconds ?? 0.002) + o.bytes / o.fetchBytesPerSecond < o.tokens * o.prefillSecondsPerToken;
}

export class PeerFetcher {
  private readonly clients = new Map<string, WorkerClient>();
  /** EMA of past fetches' throughput (bytes/s). */
  private bytesPerSecond: number | null = null;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  /** Peers that failed, and until when they are skipped. */
  private readonly failedUntil = new Map<string, number>();

  constructor(private readonly o: PeerFetchOptions) {
    this.timeoutMs = o.timeoutMs ?? 2000;
    this.maxBytes = o.maxBytes ?? 256 << 20;
  }

  /** Pulls what the peer holds of this prompt and this worker does not; resolves with the tokens now cached by it. */
  async prefetch(tokenIds: readonly number[], cacheSalt: string, hint: PeerHint): Promise<number> {
    const { layout } = this.o;
    const hashes = promptBlockHashes(tokenIds, layout.blockSize, { modelId: layout.modelId, cacheSalt }).slice(0, hint.blocks);
    const have = this.o.heldHere(hashes);
    const want = hashes.slice(have, have + Math.floor(this.maxBytes / layout.bytesPerBlock));
    if (want.length === 0) return this.done('held_here', 0);
    const worth = fetchWorthIt({
      tokens: want.length * layout.blockSize,
      bytes: want.length * layout.bytesPerBlock,
      prefillSecondsPerToken: this.o.prefillSecondsPerToken(),
      fetchBytesPerSecond: this.bytesPerSecond,
    });
    if (!worth) return this.done('prefill_cheaper', 0);
    const key = `${hint.workerId}@${hint.address}`;
    if ((this.failedUntil.get(key) ?? 0) > Date.now()) return this.done('peer_backoff', 0);
    const t0 = performance.now();
    const { blocks, complete } = await this.fetch(hint, want);
    if (complete) {
      this.failedUntil.delete(key);
    } else {
      this.failedUntil.set(key, Date.now() + (this.o.backoffMs ?? 5000));
      // a fresh channel next time (a pod that moved leaves a dead address behind)
      this.clients.get(key)?.close();
      this.clients.delete(key);
    }
    const got = blocks.map((b, i) => ({ ...b, parent: have + i === 0 ? null : (hashes[have + i - 1] as BlockHash) }));
    const placed = got.length > 0 ? await this.o.install(got, hashes.slice(0, have)).catch(() => 0) : 0;
    const seconds = (performance.now() - t0) / 1000;
    if (placed > 0) {
      const bytes = placed * layout.bytesPerBlock;
      const bw = bytes / Math.max(seconds, 1e-6);
      this.bytesPerSecond = this.bytesPerSecond === null ? bw : 0.7 * this.bytesPerSecond + 0.3 * bw;
      this.o.observer?.fetched(placed, bytes, placed * layout.blockSize, seconds);
    }
    return this.done(placed === want.length && complete ? 'fetched' : placed > 0 ? 'partial' : 'failed', placed * layout.blockSize);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private done(outcome: FetchOutcome, tokens: number): number {
    this.o.observer?.outcome(outcome);
    return tokens;
  }

  private client(hint: PeerHint): WorkerClient {
    const key = `${hint.workerId}@${hint.address}`;
    let c = this.clients.get(key);
    if (!c) {
      c = new (protos().v1.Worker)(hint.address, workerChannelCredentials(this.o.tls, hint.workerId));
      this.clients.set(key, c);
    }
    return c;
  }

  /** The leading blocks of `want` the peer sends intact, in order; stops at the first bad one, the deadline or the byte bound. */
  private async fetch(hint: PeerHint, want: BlockHash[]): Promise<{ blocks: { hash: BlockHash; data: Uint8Array }[]; complete: boolean }> {
    const client = this.client(hint);
    // a peer that cannot be reached (down, or dropped by a network policy) fails fast, not at the transfer deadline
    const connected = await new Promise<boolean>((resolve) =>
      client.waitForReady(Date.now() + (this.o.connectTimeoutMs ?? 300), (e) => resolve(!e)),
    );
    if (!connected) return { blocks: [], complete: false };
    return this.stream(client, want);
  }

  private stream(client: WorkerClient, want: BlockHash[]): Promise<{ blocks: { hash: BlockHash; data: Uint8Array }[]; complete: boolean }> {
    const { layout } = this.o;
    return new Promise((resolve) => {
      const blocks: { hash: BlockHash; data: Uint8Array }[] = [];
      let settled = false;
      const call = client.FetchBlocks(
        {
          hashes: want,
          modelId: layout.modelId,
          blockSize: layout.blockSize,
          kvDtype: layout.kvDtype,
          bytesPerBlock: layout.bytesPerBlock,
          fromWorker: this.o.workerId,
        },
        { deadline: Date.now() + this.timeoutMs },
      );
      const finish = (complete: boolean) => {
        if (settled) return;
        settled = true;
        resolve({ blocks, complete });
      };
      call.on('data', (m: FetchBlocksResponse__Output) => {
        if (settled) return;
        const data = m.data ? new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.length) : new Uint8Array(0);
        const hash = want[blocks.length];
        if (hash === undefined || m.hash !== hash || data.length !== layout.bytesPerBlock || crc32(data) !== m.crc32) {
          call.cancel();
          finish(false);
          return;
        }
        blocks.push({ hash, data: Uint8Array.from(data) });
        if (blocks.length === want.length) finish(true);
      });
      call.on('error', (e: grpc.ServiceError) => finish(e.code === grpc.status.CANCELLED && blocks.length === want.length));
      call.on('end', () => finish(blocks.length === want.length));
    });
  }
}
