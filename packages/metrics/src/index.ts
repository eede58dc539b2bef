import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

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
