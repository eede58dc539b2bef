/**
 * One way to reach the cluster's Redis for every process: `redis://[user:password@]host:port[/db]`
 * (or `rediss://` for TLS) is a single Redis (the default deployment);
 * `redis-cluster://[user:password@]host:port,host:port` lists startup nodes of a Redis Cluster. Every key kcache writes is hash-tagged per worker
 * (@kcache/protocol), so each script runs on one node of a cluster.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';

export type RedisClient = Redis | Cluster;

const CLUSTER_SCHEME = 'redis-cluster://';

/** `redis-cluster://[user:password@]nodes`: the credentials apart from the node list. */
function clusterCredentials(url: string): { nodes: string; username?: string; password?: string } {
  const rest = url.slice(CLUSTER_SCHEME.length);
  const at = rest.lastIndexOf('@');
  if (at < 0) return { nodes: rest };
  const [user, pass] = rest.slice(0, at).split(':') as [string, string?];
  return {
    nodes: rest.slice(at + 1),
    username: user ? decodeURIComponent(user) : undefined,
    password: pass === undefined ? undefined : decodeURIComponent(pass),
  };
}

export function connectRedis(url: string, options: RedisOptions = {}): RedisClient {
  if (!url.startsWith(CLUSTER_SCHEME)) return new Redis(url, options);
  const { nodes: list, username, password } = clusterCredentials(url);
  const nodes = list
    .split(',')
    .filter((n) => n.length > 0)
    .map((n) => {
      const m = /^([^:/]+):(\d+)\/?$/.exec(n);
      if (!m) throw new Error(`redis url: '${n}' in ${url} is not host:port`);
      return { host: m[1] as string, port: Number(m[2]) };
    });
  if (nodes.length === 0) throw new Error(`redis url: ${url} names no node`);
  const { lazyConnect, enableOfflineQueue, retryStrategy, ...redisOptions } = options;
  return new Cluster(nodes, {
    lazyConnect,
    enableOfflineQueue,
    clusterRetryStrategy: retryStrategy ? (times) => retryStrategy(times) ?? null : undefined,
    redisOptions: { ...redisOptions, username, password },
  });
}

/** The URL with its password replaced by `***`, for logs and ready lines. */
export function redactRedisUrl(url: string): string {
  return url.replace(/^([a-z-]+:\/\/[^:@/]*:)[^@/]*@/, '$1***@');
}

/** A redis:// or redis-cluster:// URL's shape, checked before any connection (CLI flags). */
export function checkRedisUrl(url: string): string | null {
  if (url.startsWith(CLUSTER_SCHEME)) {
    const bad = clusterCredentials(url)
      .nodes.split(',')
      .find((n) => !/^[^:/]+:\d+\/?$/.test(n));
    return bad === undefined ? null : `'${bad}' is not host:port`;
  }
  return /^rediss?:\/\//.test(url) ? null : 'expected redis://host:port or redis-cluster://host:port,host:port';
}
