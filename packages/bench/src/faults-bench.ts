// `kcache bench faults`: each fault a production cluster meets, on a local cluster of real
// processes (a private redis-server, `kcache serve router`, `kcache serve worker` × N, all with
// their default liveness settings), with the client's view counted per case: sent, completed,
// failed (by gRPC status), stalled (a wait of more than 3 s between two messages of a stream, or
// before its first), lost (no end within the watchdog, or ended OK but short of its tokens).
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { startRedis, type TestRedis } from '@kcache/block-index';
import { type GenerateClient, type GenerateRequest, type GenerateResponse__Output, protos } from '@kcache/protocol';

export const FAULT_CASES = ['sigkill', 'sigstop', 'redis-restart', 'poison', 'overload', 'drain'] as const;
export type FaultCase = (typeof FAULT_CASES)[number];

/** A stream that waits longer than this between two messages (or for its first) is stalled. */
export const STALL_MS = 3000;

export interface FaultsBenchOptions {
  /** The kcache CLI entry (dist/main.js) the cluster's processes run. */
  cli: string;
  model: string;
  cases: readonly FaultCase[];
  log: (line: string) => void;
}

export interface FaultRow {
  case: FaultCase;
  sent: number;
  completed: number;
  /** Requests that ended with a non-OK status, by status name. */
  failed: Record<string, number>;
  stalled: number;
  lost: number;
  /** The case's own figure (token identity, longest wait, rejection latency). */
  figure: string;
  target: string;
  met: boolean;
}

export interface StreamResult {
  /** 'OK' or the gRPC status name it ended with ('LOST' when it never ended). */
  status: string;
  tokens: number[];
  finish: string;
  migrations: number;
  /** Longest wait for a message: before the first, between two, or before the end. */
  longestWaitMs: number;
  /** From sending to the end (status or watchdog). */
  elapsedMs: number;
}

/** One request as a client sees it; `onChunk` gets each chunk's token count. */
export function stream(
  client: GenerateClient,
  request: GenerateRequest,
  watchdogMs: number,
  onChunk: (tokens: number) => void = () => {},
): Promise<StreamResult> {
  const t0 = performance.now();
  let last = t0;
  const r: StreamResult = { status: 'LOST', tokens: [], finish: '', migrations: 0, longestWaitMs: 0, elapsedMs: 0 };
  const mark = () => {
    const now = performance.now();
    r.longestWaitMs = Math.max(r.longestWaitMs, now - last);
    last = now;
  };
  return new Promise((resolve) => {
    let ended = false;
    const end = (status: string) => {
      if (ended) return;
      ended = true;
      clearTimeout(watchdog);
      mark();
      r.status = status;
      r.elapsedMs = performance.now() - t0;
      resolve(r);
    };
    const call = client.Generate(request);
    const watchdog = setTimeout(() => {
      call.cancel();
      end('LOST');
    }, watchdogMs);
    call.on('data', (m: GenerateResponse__Output) => {
      mark();
      if (m.chunk) {
        const ids = m.chunk.tokenIds ?? [];
        r.tokens.push(...ids);
        onChunk(ids.length);
      }
      if (m.final) {
        r.finish = m.final.finishReason ?? '';
        r.migrations = m.final.migrations ?? 0;
      }
    });
    call.on('end', () => end('OK'));
    call.on('error', (e: grpc.ServiceError) => end(grpc.status[e.code] ?? String(e.code)));
  });
}

/** Counts a case's streams: completed = OK with all `expectTokens[i]` tokens; OK but short is lost. */
export function tally(results: readonly StreamResult[], expectTokens: readonly number[]) {
  const failed: Record<string, number> = {};
  let completed = 0;
  let lost = 0;
  let stalled = 0;
  results.forEach((r, i) => {
    if (r.longestWaitMs > STALL_MS) stalled++;
    if (r.status === 'OK' && r.tokens.length === expectTokens[i] && r.finish === 'length') completed++;
    else if (r.status === 'OK' || r.status === 'LOST') lost++;
    else failed[r.status] = (failed[r.status] ?? 0) + 1;
  });
  return { sent: results.length, completed, failed, stalled, lost };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

interface Served {
  proc: ChildProcess;
  ready: Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

function serve(cli: string, args: string[]): Served {
  const proc = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      if (m.event === 'ready') resolve(m);
    });
    proc.once('exit', (code, signal) => reject(new Error(`kcache serve ${args[0]} exited (${signal ?? code}) before it was ready`)));
  });
  ready.catch(() => {});
  return { proc, ready, exited };
}

/** A private Redis, one router and `workers` workers (w1, w2, ...), each as its own process. */
class FaultCluster {
  readonly workers = new Map<string, Served>();
  client!: GenerateClient;
  router!: Served;

  private constructor(
    readonly redis: TestRedis,
    private readonly cli: string,
  ) {}

  static async start(o: FaultsBenchOptions, workers: number, flags: { worker?: string[]; router?: string[] } = {}): Promise<FaultCluster> {
    const c = new FaultCluster(await startRedis(), o.cli);
    try {
      for (let i = 1; i <= workers; i++) {
        const w = serve(c.cli, [
          'worker',
          ...['--model', o.model, '--port', '0', '--redis-url', c.redis.url, '--id', `w${i}`, '--threads', '1'],
          ...(flags.worker ?? []),
        ]);
        c.workers.set(`w${i}`, w);
      }
      await Promise.all([...c.workers.values()].map((w) => w.ready));
      c.router = serve(c.cli, ['router', '--port', '0', '--redis-url', c.redis.url, '--no-auth', ...(flags.router ?? [])]);
      const { address } = await c.router.ready;
      c.client = new (protos().v1.Generate)(address as string, grpc.credentials.createInsecure());
      await c.untilRouterSees(workers);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  worker(id: string): ChildProcess {
    const w = this.workers.get(id);
    if (!w) throw new Error(`no worker ${id}`);
    return w.proc;
  }

  /** Waits until the router lists `n` workers. */
  async untilRouterSees(n: number): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const listed = await new Promise<number>((res) =>
        this.client.ListModels({}, { deadline: Date.now() + 1000 }, (e, v) =>
          res(e ? 0 : (v?.models ?? []).reduce((s, m) => s + (m.workers ?? 0), 0)),
        ),
      );
      if (listed >= n) return;
      await sleep(50);
    }
    throw new Error(`the router never listed ${n} workers`);
  }

  async stop(): Promise<void> {
    this.client?.close();
    const all = [...this.workers.values(), ...(this.router ? [this.router] : [])];
    for (const s of all) {
      s.proc.kill('SIGCONT');
      if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
    }
    await Promise.all(all.map((s) => s.exited));
    await this.redis.stop();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Distinct greedy prompts (ids in every model's vocabulary), `maxTokens` each, EOS ignored. */
function greedy(n: number, promptLen: number, maxTokens: number, seed = 1): GenerateRequest[] {
  return Array.from({ length: n }, (_, k) => ({
    tokenIds: { ids: Array.from({ length: promptLen }, (_, i) => (i === 0 ? 1 : 3 + ((i * 31 + (k + seed) * 97) % 250))) },
    sampling: { temperature: 0 },
    stop: { maxTokens, ignoreEos: true },
  }));
}

const identical = (a: readonly StreamResult[], b: readonly StreamResult[]) =>
  a.filter((r, i) => r.tokens.length > 0 && r.tokens.join() === b[i]?.tokens.join()).length;

/**
 * Runs `requests` at once; `fault` runs once, when every stream has received its first tokens and
 * `atTokens` in all (so that it lands mid-stream on whichever worker it hits).
 */
async function faultedRun(c: FaultCluster, requests: GenerateRequest[], atTokens: number, fault: () => void, watchdogMs = 120_000) {
  let received = 0;
  let started = 0;
  let fired = false;
  return Promise.all(
    requests.map((r) => {
      let first = true;
      return stream(c.client, r, watchdogMs, (n) => {
        received += n;
        if (first && n > 0) {
          first = false;
          started++;
        }
        if (!fired && started === requests.length && received >= atTokens) {
          fired = true;
          fault();
        }
      });
    }),
  );
}

const row = (name: FaultCase, results: StreamResult[], expect: number[], figure: string, target: string, extraMet = true): FaultRow => {
  const t = tally(results, expect);
  const met = extraMet && t.completed === t.sent && t.stalled === 0 && t.lost === 0;
  return { case: name, ...t, figure, target, met };
};

/**
 * `n` greedy streams of `tokens` on 3 workers, run once without a fault (the reference) and once
 * with `signal` sent to w1 mid-stream: every stream must complete, token-identical.
 */
async function killCase(
  o: FaultsBenchOptions,
  name: FaultCase,
  x: { n: number; tokens: number; seed: number; atTokens: number; signal: NodeJS.Signals; workerFlags?: string[]; target: string },
): Promise<FaultRow> {
  const c = await FaultCluster.start(o, 3, { worker: x.workerFlags });
  try {
    const requests = greedy(x.n, 32, x.tokens, x.seed);
    const reference = await Promise.all(requests.map((r) => stream(c.client, r, 120_000)));
    const results = await faultedRun(c, requests, x.atTokens, () => c.worker('w1').kill(x.signal));
    const same = identical(results, reference);
    const moved = results.filter((r) => r.migrations > 0).length;
    return row(
      name,
      results,
      requests.map(() => x.tokens),
      `identical ${same}/${x.n}, ${moved} migrated`,
      x.target,
      same === x.n,
    );
  } finally {
    await c.stop();
  }
}

/** SIGKILL of one of 3 workers during 48 streams of 200 tokens: all complete, token-identical. */
const sigkill = (o: FaultsBenchOptions) =>
  killCase(o, 'sigkill', { n: 48, tokens: 200, seed: 1, atTokens: 48, signal: 'SIGKILL', target: '48 complete, identical' });

/** SIGSTOP of one of 3 workers for 25 s during 30 streams, with 6 new requests during the freeze. */
async function sigstop(o: FaultsBenchOptions): Promise<FaultRow> {
  const c = await FaultCluster.start(o, 3);
  try {
    const requests = greedy(30, 32, 400);
    const reference = await Promise.all(requests.map((r) => stream(c.client, r, 120_000)));
    const later = greedy(6, 24, 100, 500);
    let during: Promise<StreamResult[]> = Promise.resolve([]);
    let thawed: Promise<void> = Promise.resolve();
    const results = await faultedRun(c, requests, 30 * 40, () => {
      c.worker('w1').kill('SIGSTOP');
      thawed = sleep(25_000).then(() => void c.worker('w1').kill('SIGCONT'));
      during = Promise.all(later.map((r, i) => sleep(200 + i * 500).then(() => stream(c.client, r, 120_000))));
    });
    const laterResults = await during;
    await thawed;
    const all = [...results, ...laterResults];
    const longest = Math.max(...all.map((r) => r.longestWaitMs));
    const same = identical(results, reference);
    return row(
      'sigstop',
      all,
      [...requests.map(() => 400), ...later.map(() => 100)],
      `longest wait ${(longest / 1000).toFixed(2)} s, identical ${same}/30`,
      'no wait > 3 s',
      same === 30,
    );
  } finally {
    await c.stop();
  }
}

/** Redis killed, down 2 s, restarted empty on its port, under 8 clients sending all the while. */
async function redisRestart(o: FaultsBenchOptions): Promise<FaultRow> {
  const c = await FaultCluster.start(o, 3);
  try {
    const results: StreamResult[] = [];
    let phase = 'before';
    const byPhase: Record<string, number> = {};
    const stopAt = performance.now() + 9_000;
    const client = async (k: number) => {
      for (let i = 0; performance.now() < stopAt; i++) {
        const p = phase;
        const [r] = greedy(1, 40, 16, k * 1000 + i) as [GenerateRequest];
        results.push(await stream(c.client, r, 60_000));
        byPhase[p] = (byPhase[p] ?? 0) + 1;
      }
    };
    const fault = (async () => {
      await sleep(2_000);
      phase = 'down';
      await c.redis.kill();
      await sleep(2_000);
      await c.redis.restart();
      phase = 'after';
    })();
    await Promise.all([fault, ...Array.from({ length: 8 }, (_, k) => client(k))]);
    return row(
      'redis-restart',
      results,
      results.map(() => 16),
      `${byPhase.before ?? 0} before, ${byPhase.down ?? 0} while down, ${byPhase.after ?? 0} after the restart`,
      '0 failed',
    );
  } finally {
    await c.stop();
  }
}

/**
 * 35 legitimate streams with 9 poison requests among them: 3 texts of 2 MB (tokenized, on the
 * router's threads, then refused: longer than the context), 3 with a token id beyond the
 * vocabulary (refused by the worker), 3 of 3,000 ids (longer than the context).
 */
async function poison(o: FaultsBenchOptions): Promise<FaultRow> {
  const c = await FaultCluster.start(o, 3, { router: ['--max-prompt-bytes', String(8 << 20)] });
  try {
    const legit = greedy(35, 32, 200, 7);
    const bad: GenerateRequest[] = [];
    for (let i = 0; i < 3; i++) {
      bad.push({ text: `poison ${i} `.repeat(200_000), stop: { maxTokens: 8 } });
      bad.push({ tokenIds: { ids: [1, 5, 10_000_000 + i] }, stop: { maxTokens: 8 } });
      bad.push({ tokenIds: { ids: Array.from({ length: 3000 }, (_, k) => 3 + ((k + i) % 200)) }, stop: { maxTokens: 8 } });
    }
    const legitRuns: Promise<StreamResult>[] = [];
    const badRuns: Promise<StreamResult>[] = [];
    for (let i = 0; i < 35; i++) {
      legitRuns.push(stream(c.client, legit[i] as GenerateRequest, 120_000));
      if (i % 4 === 0 && bad.length > 0) badRuns.push(stream(c.client, bad.shift() as GenerateRequest, 60_000));
      await sleep(40);
    }
    const results = await Promise.all(legitRuns);
    const refused = await Promise.all(badRuns);
    const statuses = new Map<string, number>();
    for (const r of refused) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    const figure = `poison: ${[...statuses].map(([s, n]) => `${n} ${s}`).join(', ')}`;
    const allRefused = refused.length === 9 && statuses.get('INVALID_ARGUMENT') === 9;
    return row(
      'poison',
      results,
      legit.map(() => 200),
      figure,
      '0 legitimate failed, none stalled',
      allRefused,
    );
  } finally {
    await c.stop();
  }
}

/**
 * One worker that runs 4 requests and queues 16, kept full by 20 long ones, then 200 more: paced
 * at 100/s (sustained overload: the target), and all at once (a burst, whose latency this
 * machine's single client process bounds: its floor is the same burst refused by a second
 * router's admission limit, which answers before any routing work).
 */
async function overload(o: FaultsBenchOptions): Promise<FaultRow> {
  const c = await FaultCluster.start(o, 1, { worker: ['--max-num-seqs', '4', '--max-waiting', '16'] });
  const floorRouter = serve(o.cli, ['router', '--port', '0', '--redis-url', c.redis.url, '--no-auth', '--max-inflight', '1']);
  const floorClient = new (protos().v1.Generate)((await floorRouter.ready).address as string, grpc.credentials.createInsecure());
  try {
    // full = at its limit: 4 running first, then 16 queued behind them (sent together, some of the
    // 20 could find the queue full before the first 4 are scheduled)
    const fillRequests = greedy(20, 16, 1900, 900);
    const fill = fillRequests.slice(0, 4).map((r) => stream(c.client, r, 300_000));
    await sleep(300);
    fill.push(...fillRequests.slice(4).map((r) => stream(c.client, r, 300_000)));
    await sleep(300);
    const paced = greedy(200, 32, 64, 11);
    const pacedResults = await Promise.all(paced.map((r, i) => sleep(i * 10).then(() => stream(c.client, r, 120_000))));
    const burst = await Promise.all(greedy(200, 32, 64, 13).map((r) => stream(c.client, r, 120_000)));
    const holder = stream(floorClient, (greedy(1, 16, 1900, 950) as [GenerateRequest])[0], 300_000);
    await sleep(300);
    const floor = await Promise.all(greedy(200, 32, 64, 17).map((r) => stream(floorClient, r, 120_000)));
    floorClient.close(); // ends the holder
    await Promise.all([...fill, holder]);
    const refusedMs = (rs: StreamResult[]) => rs.filter((r) => r.status === 'RESOURCE_EXHAUSTED').map((r) => r.elapsedMs);
    const pct = (rs: StreamResult[]) => {
      const ms = refusedMs(rs);
      return `${ms.length} in p50 ${percentile(ms, 50).toFixed(0)} / p99 ${percentile(ms, 99).toFixed(0)} ms`;
    };
    const t = tally(
      pacedResults,
      paced.map(() => 64),
    );
    const p99 = percentile(refusedMs(pacedResults), 99);
    const onlyBackpressure = Object.keys(t.failed).every((s) => s === 'RESOURCE_EXHAUSTED');
    return {
      case: 'overload',
      ...t,
      stalled: 0, // a queued request waits its turn by design
      figure: `refused paced ${pct(pacedResults)}; burst ${pct(burst)} (floor ${pct(floor)})`,
      target: 'RESOURCE_EXHAUSTED p99 ≤ 100 ms, nothing else',
      met: onlyBackpressure && t.lost === 0 && refusedMs(pacedResults).length > 0 && p99 <= 100,
    };
  } finally {
    floorClient.close();
    floorRouter.proc.kill('SIGKILL');
    await floorRouter.exited;
    await c.stop();
  }
}

/** One of 3 workers drained (SIGTERM) with a 100 ms grace during 24 streams of 400 tokens. */
const drain = (o: FaultsBenchOptions) =>
  killCase(o, 'drain', {
    n: 24,
    tokens: 400,
    seed: 3,
    atTokens: 24 * 40,
    signal: 'SIGTERM',
    workerFlags: ['--drain-grace-ms', '100'],
    target: '0 truncated',
  });

const RUNNERS: Record<FaultCase, (o: FaultsBenchOptions) => Promise<FaultRow>> = {
  sigkill,
  sigstop,
  'redis-restart': redisRestart,
  poison,
  overload,
  drain,
};

export async function runFaultsBench(o: FaultsBenchOptions): Promise<FaultRow[]> {
  const rows: FaultRow[] = [];
  for (const name of o.cases) {
    const t = performance.now();
    const r = await RUNNERS[name](o);
    o.log(`${name}: ${r.met ? 'target met' : 'TARGET MISSED'} (${((performance.now() - t) / 1000).toFixed(0)} s)`);
    rows.push(r);
  }
  return rows;
}

export function formatFaultsBench(rows: readonly FaultRow[]): string {
  const head = ['case', 'sent', 'completed', 'failed', 'stalled', 'lost', 'met', 'figure', 'target'];
  const cells = rows.map((r) => [
    r.case,
    String(r.sent),
    String(r.completed),
    Object.entries(r.failed)
      .map(([s, n]) => `${n} ${s}`)
      .join(', ') || '0',
    String(r.stalled),
    String(r.lost),
    r.met ? 'yes' : 'NO',
    r.figure,
    r.target,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [line(head), ...cells.map(line)].join('\n');
}
