// An authenticated cluster: mutual TLS between router and worker (and between workers, for peer
// fetch) with certificates from `kcache certs`. A worker refuses every call without a cluster certificate; a router reaches a
// worker only if the worker's certificate names the worker id of its lease, so a lease forged in
// Redis captures nothing. Real worker process, real TLS over loopback, a private Redis.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startLocalCluster } from '@kcache/bench';
import {
  encodeLease,
  leaseKey,
  loadClusterTls,
  protos,
  WORKERS_SET,
  type WorkerClient,
  type WorkerHandlers,
  type WorkerLease,
  workerChannelCredentials,
} from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { REPO_ROOT, STORIES_260K } from './helpers/paths.js';
import { type KcacheProcess, spawnKcache, workerArgs } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';
import { tempDir } from './helpers/temp.js';
import { generate } from './helpers/worker-client.js';

const certs = (dir: string, workers: string) => {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'packages/cli/dist/main.js'), 'certs', '--out', dir, '--workers', workers], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(r.stderr);
};
const files = (dir: string, name: string) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: join(dir, 'ca.crt') });

let dir: string;
let redis: TestRedis;
let worker: KcacheProcess;
let workerAddress: string;
let router: RunningRouter;

beforeAll(async () => {
  dir = tempDir('kcache-certs-');
  certs(dir, 'wt1');
  redis = await startRedis();
  const w = files(dir, 'worker-wt1');
  worker = spawnKcache([...workerArgs(STORIES_260K, redis.url, 'wt1', 64), '--tls-cert', w.cert, '--tls-key', w.key, '--tls-ca', w.ca]);
  workerAddress = (await worker.ready).address as string;
  router = await startRouter({
    apiKeys: null,
    port: 0,
    redisUrl: redis.url,
    refreshMs: 100,
    policy: 'round_robin',
    workerTls: loadClusterTls(files(dir, 'router-r1')),
  });
  await router.refresh();
});
afterAll(async () => {
  await router?.close();
  worker?.proc.kill('SIGKILL');
  await worker?.exited;
  await redis?.stop();
});

const ask = (seed: number) => ({
  tokenIds: { ids: Array.from({ length: 20 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 31 + seed * 7) % 400))) },
  stop: { maxTokens: 2, ignoreEos: true },
});

test('the router reaches its worker over mutual TLS', async () => {
  const c = routerClient(router.address);
  try {
    expect(await routed(c, ask(1))).toMatchObject({ workerId: 'wt1', finishReason: 'length' });
  } finally {
    c.close();
  }
});

test('the worker refuses every call without a cluster certificate', async () => {
  const other = tempDir('kcache-other-ca-');
  certs(other, 'wt1'); // the same names from another CA
  const ca = loadClusterTls(files(dir, 'router-r1'))?.ca as Buffer;
  const foreign = loadClusterTls(files(other, 'worker-wt1'));
  const mine = loadClusterTls(files(dir, 'router-r1'));
  const opts = { 'grpc.ssl_target_name_override': 'wt1' };
  const clients: [string, grpc.ChannelCredentials][] = [
    ['plaintext', grpc.credentials.createInsecure()],
    ['TLS without a client certificate', grpc.credentials.createSsl(ca)],
    ['a certificate of another CA', grpc.credentials.createSsl(ca, foreign?.key, foreign?.cert)],
  ];
  const calls = (w: WorkerClient) => [
    () =>
      new Promise((res, rej) => {
        const s = w.Generate({ tokenIds: [1, 2, 3], stop: { maxTokens: 1 } }, { deadline: Date.now() + 5000 });
        s.on('data', () => {});
        s.on('end', res);
        s.on('error', rej);
      }),
    () => new Promise((res, rej) => w.Abort({ requestId: 'x' }, { deadline: Date.now() + 5000 }, (e, v) => (e ? rej(e) : res(v)))),
    () => new Promise((res, rej) => w.Info({}, { deadline: Date.now() + 5000 }, (e, v) => (e ? rej(e) : res(v)))),
    () => new Promise((res, rej) => w.Snapshot({}, { deadline: Date.now() + 5000 }, (e, v) => (e ? rej(e) : res(v)))),
  ];
  for (const [what, creds] of clients) {
    const w = new (protos().v1.Worker)(workerAddress, creds, opts);
    try {
      for (const call of calls(w)) await expect(call(), what).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      w.close();
    }
  }
  // with the cluster's router certificate, every one of them answers
  const ok = new (protos().v1.Worker)(workerAddress, grpc.credentials.createSsl(ca, mine?.key, mine?.cert), opts);
  try {
    for (const call of calls(ok)) await call();
  } finally {
    ok.close();
  }
});

test('forged leases receive nothing: one at the real worker under another id, one at an impostor with a certificate of its own CA', async () => {
  // the impostor: a Worker service with a certificate for its claimed id from a CA of its own
  const evil = tempDir('kcache-evil-ca-');
  certs(evil, 'w-evil');
  let captured = 0;
  const impostor = new grpc.Server();
  const refuse = (_c: unknown, cb: (e: grpc.ServiceError | null) => void) => cb({ code: grpc.status.UNIMPLEMENTED } as grpc.ServiceError);
  impostor.addService(protos().v1.Worker.service, {
    Generate(call) {
      captured++;
      call.end();
    },
    Abort: refuse,
    Info: refuse,
    Snapshot: refuse,
  } as WorkerHandlers);
  const evilTls = loadClusterTls(files(evil, 'worker-w-evil')) as { cert: Buffer; key: Buffer };
  // it takes any caller: only the router's check of the certificate it presents can keep it out
  const anyone = grpc.ServerCredentials.createSsl(null, [{ cert_chain: evilTls.cert, private_key: evilTls.key }], false);
  const port = await new Promise<number>((res, rej) => impostor.bindAsync('127.0.0.1:0', anyone, (e, p) => (e ? rej(e) : res(p))));
  const real = JSON.parse((await redis.client.get(leaseKey('wt1'))) as string) as WorkerLease;
  const forge = async (workerId: string, address: string) => {
    const lease: WorkerLease = { ...real, workerId, address, instance: workerId, writtenAt: Date.now() };
    await redis.client.set(leaseKey(workerId), encodeLease(lease), 'PX', 60_000);
    await redis.client.sadd(WORKERS_SET, workerId);
  };
  await forge('w-fake', workerAddress); // the real worker's address, another worker's id
  await forge('w-evil', `127.0.0.1:${port}`);
  const c = routerClient(router.address);
  try {
    await router.refresh();
    const served = [];
    for (let i = 0; i < 20; i++) served.push(await routed(c, ask(10 + i)));
    expect(served.every((r) => r.workerId === 'wt1' && r.finishReason === 'length')).toBe(true);
    expect(captured).toBe(0);
    // the real worker behind the lease with another id was never used either: that lease's attempts
    // all failed (its breaker opened), while wt1's stays closed
    const open = Object.fromEntries((await router.metrics.breakerState.get()).values.map((v) => [v.labels.worker, v.value]));
    expect(open).toEqual({ wt1: 0, 'w-fake': 1, 'w-evil': 1 });
  } finally {
    c.close();
    impostor.forceShutdown();
    for (const id of ['w-fake', 'w-evil']) {
      await redis.client.del(leaseKey(id));
      await redis.client.srem(WORKERS_SET, id);
    }
  }
});

test('kcache up --tls: routers and workers speak mutual TLS with throwaway certificates; the worker port refuses plaintext', async () => {
  const cluster = await startLocalCluster(join(REPO_ROOT, 'packages/cli/dist/main.js'), [
    '--tls',
    '--workers',
    '1',
    '--model',
    STORIES_260K,
  ]);
  try {
    const c = routerClient(cluster.routers[0]?.address as string);
    try {
      expect(await routed(c, ask(3))).toMatchObject({ workerId: 'w1', finishReason: 'length' });
    } finally {
      c.close();
    }
    const plain = new (protos().v1.Worker)(cluster.workers[0]?.address as string, grpc.credentials.createInsecure());
    try {
      await expect(
        new Promise((res, rej) => plain.Info({}, { deadline: Date.now() + 5000 }, (e, v) => (e ? rej(e) : res(v)))),
      ).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      plain.close();
    }
  } finally {
    await cluster.stop();
  }
}, 60_000);

test('peer fetch over mutual TLS: a worker pulls from a cluster member, and not from one whose certificate names another id', async () => {
  const pdir = tempDir('kcache-peer-certs-');
  certs(pdir, 'pa,pb');
  const tlsOf = (name: string) => loadClusterTls(files(pdir, name));
  const start = (id: string) =>
    startWorker({
      model: STORIES_260K,
      port: 0,
      redisUrl: null,
      workerId: id,
      numBlocks: 64,
      threads: 1,
      metricsPort: null,
      tls: tlsOf(`worker-${id}`),
    });
  const [a, b] = [await start('pa'), await start('pb')];
  // the callers: a router's certificate, checking each worker's identity
  const client = (w: RunningWorker) => new (protos().v1.Worker)(w.address, workerChannelCredentials(tlsOf('router-r1'), w.workerId));
  const [ca, cb] = [client(a), client(b)];
  const P = Array.from({ length: 97 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + 5) % 500)));
  const req = (id: string, ids: number[], peer: { address: string; workerId: string }) => ({
    requestId: id,
    tokenIds: ids,
    sampling: { temperature: 0 },
    stop: { maxTokens: 4, ignoreEos: true },
    peerAddress: peer.address,
    peerWorkerId: peer.workerId,
    peerBlocks: 6,
  });
  try {
    const onA = await generate(ca, { requestId: 'a', tokenIds: P, sampling: { temperature: 0 }, stop: { maxTokens: 4, ignoreEos: true } });
    // b dials a with its own worker certificate and checks that a's names "pa"
    const ok = await generate(cb, req('b1', P, { address: a.address, workerId: 'pa' }));
    expect(ok.usage.cachedTokens).toBe(96);
    expect(ok.tokenIds).toEqual(onA.tokenIds);
    // a hint that names the wrong worker for that address: the certificate check fails, b computes
    const Q = Array.from({ length: 97 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 41 + 9) % 500)));
    await generate(ca, { requestId: 'a2', tokenIds: Q, sampling: { temperature: 0 }, stop: { maxTokens: 1, ignoreEos: true } });
    const wrong = await generate(cb, req('b2', Q, { address: a.address, workerId: 'pz' }));
    expect(wrong.usage.cachedTokens).toBe(0);
    expect(wrong.finishReason).toBe('length');
  } finally {
    ca.close();
    cb.close();
    await a.close();
    await b.close();
  }
});
