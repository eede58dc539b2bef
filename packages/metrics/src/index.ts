import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * Request-latency buckets (seconds), vLLM's: they reach 2,560 s because a long prefill queued
 * behind others on a busy CPU worker takes minutes, and a histogram whose last bucket is 80 s
 * cannot say how many minutes.
 */
export const REQUEST_LATENCY_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560,
];

/** A registry for one kcache process part, with the process's default metrics (RSS, CPU, event-loop lag). */
export function processRegistry(labels: Record<string, string>): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves `registry` at GET /metrics on host:port (0 picks a free port). */
export async function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const http: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(body),
      (e: Error) => res.writeHead(500).end(e.message),
    );
  });
  await new Promise<void>((r) => http.listen(port, host, r));
  return {
    port: (http.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => http.close(() => r())),
  };
}
