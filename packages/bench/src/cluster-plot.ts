// `kcache bench plot`: a picture of a real local cluster at work, for the README. Starts
// `kcache up` (its own Redis, a router, two workers), sends a shared-prefix workload through the
// router, scrapes every process's /metrics each second, and renders what it saw as an SVG:
// generated tokens/s per worker, the prefix cache hit rate per worker, and the router's
// decisions by reason. The SVG is drawn by hand (polylines): no plotting library is needed for
// three line charts, and the output is a small text file that diffs well.
import { writeFileSync } from 'node:fs';
import { KcacheClient } from '@kcache/client';
import { startLocalCluster } from './local-cluster.js';

export interface PlotOptions {
  /** The kcache CLI entry point (packages/cli/dist/main.js). */
  cli: string;
  out: string;
  seconds: number;
  model: string;
  log: (line: string) => void;
}

type Sample = Map<string, number>; // "name{labels}" -> value

/** Prometheus text exposition -> series values (comments skipped). */
export function parseMetrics(text: string): Sample {
  const out: Sample = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of every series of `name` whose labels contain all of `labels` (k="v" pairs). */
export function sumOf(s: Sample, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const [k, v] of s) {
    const brace = k.indexOf('{');
    if ((brace < 0 ? k : k.slice(0, brace)) !== name) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) total += v;
  }
  return total;
}

interface Series {
  label: string;
  color: string;
  points: [number, number][];
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];

function chart(title: string, yLabel: string, series: Series[], x0: number, y0: number, w: number, h: number, yMax?: number): string {
  const tMax = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const vMax = yMax ?? Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1]))) * 1.1;
  const px = (t: number) => x0 + 50 + ((w - 60) * t) / tMax;
  const py = (v: number) => y0 + h - 30 - ((h - 60) * v) / vMax;
  const parts = [
    `<text x="${x0 + w / 2}" y="${y0 + 18}" text-anchor="middle" font-size="14" font-weight="bold">${title}</text>`,
    `<line x1="${px(0)}" y1="${py(0)}" x2="${px(tMax)}" y2="${py(0)}" stroke="#888"/>`,
    `<line x1="${px(0)}" y1="${py(0)}" x2="${px(0)}" y2="${py(vMax)}" stroke="#888"/>`,
    `<text x="${px(0) - 4}" y="${py(vMax) + 4}" text-anchor="end" font-size="10">${fmt(vMax)}</text>`,
    `<text x="${px(0) - 4}" y="${py(0) + 4}" text-anchor="end" font-size="10">0</text>`,
    `<text x="${px(tMax)}" y="${py(0) + 14}" text-anchor="end" font-size="10">${tMax.toFixed(0)} s</text>`,
    `<text x="${x0 + 12}" y="${y0 + h / 2}" font-size="10" transform="rotate(-90 ${x0 + 12} ${y0 + h / 2})" text-anchor="middle">${yLabel}</text>`,
  ];
  const step = Math.min(110, (w - 70) / Math.max(1, series.length));
  series.forEach((s, i) => {
    const pts = s.points.map(([t, v]) => `${px(t).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts}"/>`);
    parts.push(`<rect x="${x0 + 60 + i * step}" y="${y0 + 26}" width="10" height="10" fill="${s.color}"/>`);
    parts.push(`<text x="${x0 + 74 + i * step}" y="${y0 + 35}" font-size="11">${s.label}</text>`);
  });
  return parts.join('\n');
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}

export async function renderClusterPlot(o: PlotOptions): Promise<{ requests: number; failed: number; hitRate: number }> {
  const ready = await startLocalCluster(o.cli, ['--workers', '2', '--model', o.model]);
  try {
    const router = ready.routers[0] as { address: string; metricsPort: number };
    o.log(`plot: cluster up, router ${router.address}; sending a shared-prefix workload for ${o.seconds} s`);
    const client = new KcacheClient(router.address);
    // 4 "system prompts" of ~400 bytes (the byte tokenizer: ~25 blocks each), short questions after them
    const systems = Array.from(
      { length: 4 },
      (_, g) => `${`System prompt ${g}: you are assistant number ${g}. `.repeat(10)}Always answer in the style of group ${g}. `,
    );
    let sent = 0;
    let failed = 0;
    let stop = false;
    const clientLoop = async (c: number) => {
      while (!stop) {
        const g = (sent * 7 + c) % systems.length;
        sent++;
        await client.generate({ text: `${systems[g]} Question ${sent}?`, maxTokens: 8, ignoreEos: true, temperature: 0 }).catch(() => {
          failed++;
        });
      }
    };
    const scrape = async (port: number) => parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    const t0 = performance.now();
    const samples: { t: number; router: Sample; workers: Sample[] }[] = [];
    const loops = Array.from({ length: 4 }, (_, c) => clientLoop(c));
    while ((performance.now() - t0) / 1000 < o.seconds) {
      samples.push({
        t: (performance.now() - t0) / 1000,
        router: await scrape(router.metricsPort),
        workers: await Promise.all(ready.workers.map((w) => scrape(w.metricsPort))),
      });
      await new Promise((r) => setTimeout(r, 1000));
    }
    stop = true;
    await Promise.all(loops);
    client.close();

    const rate = (i: number, get: (s: (typeof samples)[number]) => number) => {
      const a = samples[i - 1] as (typeof samples)[number];
      const b = samples[i] as (typeof samples)[number];
      return (get(b) - get(a)) / (b.t - a.t);
    };
    const tokens: Series[] = ready.workers.map((w, wi) => ({
      label: w.id,
      color: COLORS[wi] as string,
      points: samples.slice(1).map((s, i) => [s.t, rate(i + 1, (x) => sumOf(x.workers[wi] as Sample, 'kcache_generation_tokens_total'))]),
    }));
    const hits: Series[] = ready.workers.map((w, wi) => ({
      label: w.id,
      color: COLORS[wi] as string,
      points: samples.map((s) => {
        const q = sumOf(s.workers[wi] as Sample, 'kcache_prefix_cache_queries_total');
        return [s.t, q > 0 ? sumOf(s.workers[wi] as Sample, 'kcache_prefix_cache_hits_total') / q : 0];
      }),
    }));
    const reasons = ['cache_hit', 'new_prefix', 'low_match', 'balance_spill'];
    const decisions: Series[] = reasons.map((reason, i) => ({
      label: reason,
      color: COLORS[i + 2] as string,
      points: samples.map((s) => [s.t, sumOf(s.router, 'kcache_router_decisions_total', { reason })]),
    }));
    const last = samples.at(-1) as (typeof samples)[number];
    const q = last.workers.reduce((n, w) => n + sumOf(w, 'kcache_prefix_cache_queries_total'), 0);
    const h = last.workers.reduce((n, w) => n + sumOf(w, 'kcache_prefix_cache_hits_total'), 0);
    const W = 960;
    const svg = [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="300" viewBox="0 0 ${W} 300" font-family="sans-serif">`,
      '<title>kcache local cluster: tokens/s, prefix cache hit rate and routing decisions over time</title>',
      '<rect width="100%" height="100%" fill="white"/>',
      chart('generated tokens/s per worker', 'tokens/s', tokens, 0, 0, W / 3, 280),
      chart('prefix cache hit rate (cumulative)', 'hit rate', hits, W / 3, 0, W / 3, 280, 1),
      chart('router decisions by reason', 'requests', decisions, (2 * W) / 3, 0, W / 3, 280),
      `<text x="${W / 2}" y="294" text-anchor="middle" font-size="10" fill="#555">kcache up: 2 workers (${o.model}), 1 router, ${sent} requests from 4 clients sharing 4 system prompts; scraped from /metrics every second</text>`,
      '</svg>',
    ].join('\n');
    writeFileSync(o.out, `${svg}\n`);
    return { requests: sent, failed, hitRate: q > 0 ? h / q : 0 };
  } finally {
    await ready.stop();
  }
}
