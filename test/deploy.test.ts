// The deployment files as shipped: docker-compose.yml (+ the GPU override) through
// `docker-compose config`, the kustomize overlays through `kubectl kustomize`, the Prometheus
// config and alert rules through `promtool`, and every metric a dashboard or rule queries checked
// against what the router and worker export. .ci/run installs docker-compose, kubectl and
// promtool where a machine lacks them.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RouterMetrics } from '@kcache/router';
import { WorkerMetrics } from '@kcache/worker';
import { describe, expect, test } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT } from './helpers/paths.js';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML documents are walked untyped
type Doc = Record<string, any>;

function run(cmd: string, args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  if (r.error) throw new Error(`${cmd} is not installed (.ci/run installs it): ${r.error.message}`);
  expect(r.stderr.split('\n').filter((l) => /error|invalid/i.test(l))).toEqual([]);
  expect(r.status).toBe(0);
  return r.stdout;
}

describe('docker-compose.yml', () => {
  const secrets = { REDIS_PASSWORD: 'redis-pw-0123', GRAFANA_ADMIN_PASSWORD: 'grafana-pw-0123' };
  const config = (...files: string[]) => parse(run('docker-compose', [...files.flatMap((f) => ['-f', f]), 'config'], secrets)) as Doc;

  test('it will not start without a Redis password and a Grafana admin password', () => {
    for (const missing of Object.keys(secrets)) {
      const env: Record<string, string | undefined> = { ...process.env, ...secrets };
      delete env[missing];
      const r = spawnSync('docker-compose', ['config'], { cwd: REPO_ROOT, encoding: 'utf8', env });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`set ${missing}`);
    }
  });

  test('Redis (noeviction, AOF), a router, two CPU workers, a batch runner, Prometheus and Grafana, with health checks and volumes', () => {
    const c = config('docker-compose.yml');
    expect(Object.keys(c.services).sort()).toEqual(['batch', 'grafana', 'prometheus', 'redis', 'router', 'worker1', 'worker2']);
    const s = c.services;
    expect(s.redis.command.join(' ')).toMatch(/--appendonly yes --maxmemory-policy noeviction --maxmemory 1gb --requirepass redis-pw-0123/);
    for (const name of ['router', 'worker1', 'worker2', 'batch']) expect(s[name].command).toContain('redis://:redis-pw-0123@redis:6379');
    expect(s.redis.volumes.map((v: Doc | string) => (typeof v === 'string' ? v : `${v.source}:${v.target}`))).toContainEqual(
      expect.stringMatching(/^redis-data:\/data/),
    );
    for (const name of ['redis', 'router', 'worker1', 'worker2', 'batch', 'prometheus', 'grafana'])
      expect(s[name].healthcheck?.test).toBeDefined();
    for (const name of ['router', 'worker1', 'worker2']) {
      expect(s[name].healthcheck.test.join(' ')).toMatch(/main\.js health --addr 127\.0\.0\.1:500\d\d/);
      expect(s[name].command).toContain('--metrics-port');
      expect(s[name].depends_on.redis.condition).toBe('service_healthy');
      expect(s[name].build.target).toBe('cpu');
    }
    // workers publish the address the router reaches them at
    expect(s.worker1.command.join(' ')).toMatch(/--advertise-host worker1 --port 50061/);
    expect(s.worker2.command.join(' ')).toMatch(/--advertise-host worker2 --port 50061/);
    // a host-RAM offload tier below each worker's KV pool (docs/CACHE.md)
    for (const w of ['worker1', 'worker2']) expect(s[w].command.join(' ')).toMatch(/--offload-bytes 1G/);
    // the router authenticates clients with the API keys of a Compose secret
    expect(s.router.command.join(' ')).toMatch(/--api-keys-file \/run\/secrets\/api_keys/);
    expect(s.router.secrets.map((x: Doc) => x.source)).toEqual(['api_keys']);
    // the batch runner sends batches through the router's OpenAI API with a key of the same secret
    expect(s.batch.command.join(' ')).toMatch(/serve batch .*--router http:\/\/router:8000 --api-key-file \/run\/secrets\/api_keys/);
    expect(s.batch.secrets.map((x: Doc) => x.source)).toEqual(['api_keys']);
    expect(s.batch.depends_on.router.condition).toBe('service_healthy');
    expect(s.router.command.join(' ')).toMatch(/--http-port 8000/);
    expect(c.secrets.api_keys.file).toMatch(/api-keys$/);
    // only loopback by default: nothing is reachable from the network unless KCACHE_BIND says so
    const published = (svc: Doc) =>
      (svc.ports ?? []).map((p: Doc | string) => (typeof p === 'string' ? p.replace(/:\d+\/tcp$/, '') : `${p.host_ip}:${p.published}`));
    expect(published(s.router)).toEqual(['127.0.0.1:50051', '127.0.0.1:8000']);
    expect(published(s.prometheus)).toEqual(['127.0.0.1:9090']);
    expect(published(s.grafana)).toEqual(['127.0.0.1:3000']);
    for (const name of ['redis', 'worker1', 'worker2', 'batch']) expect(s[name].ports).toBeUndefined();
    expect(s.grafana.environment).toMatchObject({ GF_AUTH_ANONYMOUS_ENABLED: 'false', GF_SECURITY_ADMIN_PASSWORD: 'grafana-pw-0123' });
    expect(Object.keys(c.volumes).sort()).toEqual(['grafana-data', 'prometheus-data', 'redis-data']);
    expect(JSON.stringify(s.grafana.volumes)).toMatch(/deploy\/grafana\/provisioning/);
    expect(JSON.stringify(s.prometheus.volumes)).toMatch(/deploy\/prometheus/);
  });

  test('the GPU override gives each worker one NVIDIA GPU and the CUDA image', () => {
    const c = config('docker-compose.yml', 'docker-compose.gpu.yml');
    for (const w of ['worker1', 'worker2']) {
      expect(c.services[w].deploy.resources.reservations.devices).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
      expect(c.services[w].build.target).toBe('cuda');
      expect(c.services[w].image).toBe('kcache:cuda');
    }
    expect(c.services.router.deploy).toBeUndefined();
  });

  test('the Dockerfile builds the engine once per image kind, in a build stage; the images run as a non-root user', () => {
    const df = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    const runtime = (stage: string) => df.slice(df.indexOf(`AS ${stage}\n`)).split(/\nFROM /)[0] as string;
    for (const stage of ['cpu', 'cuda']) expect(runtime(stage)).toMatch(/^USER 10001:10001$/m);
    const stages = [...df.matchAll(/^FROM \S+ AS (\S+)/gm)].map((m) => m[1]);
    expect(stages).toEqual(['build-cpu', 'cpu', 'node', 'build-cuda', 'cuda']);
    expect(df.match(/pnpm build/g)).toHaveLength(2);
    expect(df).toMatch(/COPY --from=build-cpu \/src\/native\/build\/Release\/kcache_engine\.node/);
  });
});

describe('Kubernetes (kustomize)', () => {
  const build = (overlay: string) =>
    parseAllDocuments(run('kubectl', ['kustomize', `deploy/k8s/overlays/${overlay}`]))
      .map((d) => d.toJS() as Doc)
      .filter(Boolean);
  const find = (docs: Doc[], kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name) as Doc;
  const container = (d: Doc) => d.spec.template.spec.containers[0];

  test('the cpu overlay: Redis, routers with an autoscaler, workers with grpc probes and a drain, monitors and rules', () => {
    const docs = build('cpu');
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    expect(kinds).toEqual([
      'Deployment/batch-runner',
      'Deployment/router',
      'HorizontalPodAutoscaler/router',
      'Namespace/kcache',
      'NetworkPolicy/batch',
      'NetworkPolicy/default-deny-ingress',
      'NetworkPolicy/redis',
      'NetworkPolicy/router',
      'NetworkPolicy/worker',
      'PodDisruptionBudget/router',
      'PodDisruptionBudget/worker',
      'PodMonitor/kcache-batch',
      'PodMonitor/kcache-router',
      'PodMonitor/kcache-worker',
      'PrometheusRule/kcache',
      'Service/redis',
      'Service/router',
      'Service/worker',
      'StatefulSet/redis',
      'StatefulSet/worker',
    ]);
    for (const d of docs.filter((x) => x.kind !== 'Namespace')) expect(d.metadata.namespace).toBe('kcache');
    const router = container(find(docs, 'Deployment', 'router'));
    const worker = container(find(docs, 'StatefulSet', 'worker'));
    expect(router.readinessProbe.grpc.port).toBe(50051);
    expect(router.livenessProbe.grpc.port).toBe(50051);
    // API keys from a Secret, mounted read-only where --api-keys-file reads them
    const keysMount = router.volumeMounts.find((m: Doc) => m.name === 'api-keys');
    expect(router.args.join(' ')).toContain(`--api-keys-file ${keysMount.mountPath}/api-keys`);
    expect(keysMount.readOnly).toBe(true);
    expect(find(docs, 'Deployment', 'router').spec.template.spec.volumes).toContainEqual({
      name: 'api-keys',
      secret: { secretName: 'kcache-api-keys' },
    });
    expect(worker.readinessProbe.grpc.port).toBe(50061);
    expect(worker.livenessProbe.grpc.port).toBe(50061);
    expect(worker.lifecycle.preStop.exec.command).toEqual(['sleep', '5']);
    expect(worker.args.join(' ')).toMatch(/--advertise-host \$\(POD_IP\)/);
    expect(worker.args.join(' ')).toMatch(/--drain-grace-ms 45000/);
    // offload tiers: host RAM, and a disk tier on a writable scratch volume (the root filesystem is read-only)
    expect(worker.args.join(' ')).toMatch(
      /--offload-bytes \$\(KCACHE_OFFLOAD_BYTES\) --offload-dir \/var\/cache\/kcache --offload-disk-bytes/,
    );
    expect(worker.volumeMounts).toContainEqual({ name: 'offload', mountPath: '/var/cache/kcache' });
    expect(find(docs, 'StatefulSet', 'worker').spec.template.spec.volumes).toContainEqual({
      name: 'offload',
      emptyDir: { sizeLimit: '18Gi' },
    });
    // the pod's grace period covers the preStop sleep and the drain
    expect(find(docs, 'StatefulSet', 'worker').spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(5 + 45);
    expect(worker.image).toBe('kcache:cpu');
    expect(JSON.stringify(worker.resources)).not.toContain('nvidia.com/gpu');
  });

  test('hardened: non-root pods with read-only root filesystems, a Redis password and ceiling, network policies, disruption budgets', () => {
    const docs = build('cpu');
    for (const [kind, name] of [
      ['Deployment', 'router'],
      ['StatefulSet', 'worker'],
      ['StatefulSet', 'redis'],
      ['Deployment', 'batch-runner'],
    ] as const) {
      const pod = find(docs, kind, name).spec.template.spec;
      expect(pod.securityContext, name).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(container(find(docs, kind, name)).securityContext, name).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
    }
    const redis = container(find(docs, 'StatefulSet', 'redis'));
    expect(redis.args.join(' ')).toMatch(/--maxmemory-policy noeviction --maxmemory \S+ --requirepass \$\(REDIS_PASSWORD\)/);
    const fromSecret = { valueFrom: { secretKeyRef: { name: 'kcache-redis', key: 'password' } } };
    for (const c of [redis, container(find(docs, 'Deployment', 'router')), container(find(docs, 'StatefulSet', 'worker'))])
      expect(c.env).toContainEqual({ name: 'REDIS_PASSWORD', ...fromSecret });
    for (const [kind, name] of [
      ['Deployment', 'router'],
      ['StatefulSet', 'worker'],
      ['Deployment', 'batch-runner'],
    ] as const)
      expect(container(find(docs, kind, name)).args).toContain('redis://:$(REDIS_PASSWORD)@redis:6379');
    // only routers reach workers; only routers and workers reach Redis; everything else is denied
    expect(find(docs, 'NetworkPolicy', 'default-deny-ingress').spec).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    const from = (name: string) => find(docs, 'NetworkPolicy', name).spec.ingress.map((r: Doc) => ({ from: r.from, ports: r.ports }));
    const pods = (name: string) => ({
      podSelector: { matchLabels: { 'app.kubernetes.io/name': name, 'app.kubernetes.io/part-of': 'kcache' } },
    });
    // workers reach each other too: peer fetch pulls cached KV blocks from the worker holding them
    expect(from('worker')).toContainEqual({
      from: [pods('kcache-router'), pods('kcache-batch'), pods('kcache-worker')],
      ports: [{ port: 50061 }],
    });
    expect(from('worker').every((r: Doc) => r.from !== undefined)).toBe(true);
    expect(from('redis')).toEqual([
      { from: [pods('kcache-router'), pods('kcache-worker'), pods('kcache-batch')], ports: [{ port: 6379 }] },
    ]);
    expect(container(find(docs, 'Deployment', 'batch-runner')).args.join(' ')).toMatch(/--router http:\/\/router:8000 --api-key-file/);
    expect(container(find(docs, 'Deployment', 'router')).args.join(' ')).toMatch(/--http-port 8000/);
    expect(find(docs, 'PodDisruptionBudget', 'router').spec.minAvailable).toBe(1);
    expect(find(docs, 'PodDisruptionBudget', 'worker').spec.maxUnavailable).toBe(1);
    const hpa = find(docs, 'HorizontalPodAutoscaler', 'router');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'router' });
    expect(container(find(docs, 'StatefulSet', 'redis')).args.slice(0, 4)).toEqual([
      '--appendonly',
      'yes',
      '--maxmemory-policy',
      'noeviction',
    ]);
    expect(find(docs, 'PodMonitor', 'kcache-worker').spec.podMetricsEndpoints[0].port).toBe('metrics');
    // the operator's rules are the promtool-checked ones
    const alerts = parse(readFileSync(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as Doc;
    expect(find(docs, 'PrometheusRule', 'kcache').spec.groups).toEqual(alerts.groups);
  });

  test('the gpu overlay gives workers one nvidia.com/gpu, the CUDA image and KCache attention', () => {
    const docs = build('gpu');
    const worker = container(find(docs, 'StatefulSet', 'worker'));
    expect(worker.image).toBe('kcache:cuda');
    expect(worker.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(worker.env.find((e: Doc) => e.name === 'KCACHE_ATTENTION').value).toBe('kcache');
    // the patch keeps the base's probes and args
    expect(worker.readinessProbe.grpc.port).toBe(50061);
    expect(worker.args[0]).toBe('serve');
    expect(find(docs, 'StatefulSet', 'worker').spec.template.spec.tolerations[0].key).toBe('nvidia.com/gpu');
  });
});

describe('Prometheus and Grafana', () => {
  test('promtool accepts the scrape config and the alert rules', () => {
    expect(run('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml'])).toMatch(/SUCCESS/);
    expect(run('promtool', ['check', 'rules', 'deploy/prometheus/alerts.yml'])).toMatch(/SUCCESS: 6 rules found/);
  });

  test('the alerts cover worker down, TTFT p99, falling hit rate, Redis down and KV near full', () => {
    const alerts = parse(readFileSync(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as Doc;
    const names = alerts.groups.flatMap((g: Doc) => g.rules.map((r: Doc) => r.alert));
    for (const a of [
      'KcacheWorkerDown',
      'KcacheTTFTP99High',
      'KcachePrefixCacheHitRateFalling',
      'KcacheRedisDown',
      'KcacheKvCacheNearFull',
    ])
      expect(names).toContain(a);
  });

  test('every metric a dashboard or an alert queries is one the router or a worker exports', async () => {
    const exported = new Set<string>(['up']); // Prometheus's own per-target series
    for (const registry of [new RouterMetrics('r').registry, new WorkerMetrics('w', 'm').registry]) {
      for (const m of await registry.getMetricsAsJSON()) {
        exported.add(m.name);
        if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
      }
    }
    const queries: string[] = [];
    const dashDir = join(REPO_ROOT, 'deploy/grafana/dashboards');
    for (const f of readdirSync(dashDir)) {
      const d = JSON.parse(readFileSync(join(dashDir, f), 'utf8')) as Doc;
      for (const p of d.panels) for (const t of p.targets ?? []) queries.push(t.expr);
    }
    const alerts = parse(readFileSync(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as Doc;
    for (const g of alerts.groups) for (const r of g.rules) queries.push(r.expr);
    expect(queries.length).toBeGreaterThan(20);
    const used = new Set(queries.flatMap((q) => [...q.matchAll(/\b(kcache_[a-z0-9_]+|up)\b/g)].map((m) => m[1] as string)));
    expect([...used].filter((m) => !exported.has(m))).toEqual([]);
    // and the panels the issue asks for are there
    const all = queries.join('\n');
    for (const m of [
      'kcache_time_to_first_token_seconds_bucket',
      'kcache_inter_token_latency_seconds_bucket',
      'kcache_e2e_request_latency_seconds_bucket',
      'kcache_generation_tokens_total',
      'kcache_num_requests_running',
      'kcache_num_requests_waiting',
      'kcache_kv_cache_usage_perc',
      'kcache_prefix_cache_hits_total',
      'kcache_router_decisions_total',
      'kcache_router_actual_cached_tokens_total',
      'kcache_router_retries_total',
      'kcache_router_breaker_open',
      // the cluster-wide KV cache (docs/CACHE.md)
      'kcache_prefix_cache_hits_by_tier_total',
      'kcache_offload_blocks',
      'kcache_peer_fetch_requests_total',
    ])
      expect(all).toContain(m);
  });
});
