import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { checkRedisUrl, connectRedis, type RedisClient, redactRedisUrl } from '@kcache/block-index';
import { KV_DTYPES, type KvDtype } from '@kcache/engine';
import { LOAD_QUANT_DTYPES, loadChatTemplate } from '@kcache/models';
import { type ClusterTls, ClusterTlsError, loadClusterTls } from '@kcache/protocol';
import { ApiKeys, ApiKeysError, parseApiKeyLines, readApiKeysFile } from '@kcache/router';

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function intArg(name: string, v: string | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

/** --redis-url (or REDIS_URL): redis://host:port or redis-cluster://host:port,host:port. */
export function redisUrlArg(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const problem = checkRedisUrl(v);
  if (problem) throw new UsageError(`--redis-url: ${problem}, got '${v}'`);
  return v;
}

export function numArg(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

export function idsArg(name: string, v: string): number[] {
  const parts = v.split(',').map((s) => s.trim());
  const ids = parts.map(Number);
  const bad = parts.findIndex((s, i) => s === '' || !Number.isInteger(ids[i]) || (ids[i] as number) < 0);
  if (bad >= 0) throw new UsageError(`--${name} must be comma-separated non-negative integers, got '${parts[bad]}' at index ${bad}`);
  return ids;
}

const BYTE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** A size in bytes: an integer, optionally with a binary unit (`8G`, `512MiB`, `1t`). */
export function bytesArg(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const m = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(v.trim());
  const n = m ? Number(m[1]) * (BYTE_UNITS[(m[2] as string).toLowerCase()] as number) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw new UsageError(`--${name} must be a size in bytes (an integer, optionally with K, M, G or T), got '${v}'`);
  return n;
}

/** The offload tiers and peer fetch flags of `serve worker` and `up`. */
export const OFFLOAD_OPTIONS = {
  'offload-bytes': { type: 'string' },
  'offload-dir': { type: 'string' },
  'offload-disk-bytes': { type: 'string' },
  'peer-fetch': { type: 'string' },
} as const;

export interface OffloadArgs {
  offloadBytes: number;
  offloadDir: string | null;
  offloadDiskBytes: number;
  peerFetch: boolean;
}

/** --offload-bytes N, --offload-dir DIR with --offload-disk-bytes N, --peer-fetch on|off (default on). */
export function offloadArgs(values: {
  'offload-bytes'?: string;
  'offload-dir'?: string;
  'offload-disk-bytes'?: string;
  'peer-fetch'?: string;
}): OffloadArgs {
  const offloadBytes = bytesArg('offload-bytes', values['offload-bytes'], 0);
  const offloadDiskBytes = bytesArg('offload-disk-bytes', values['offload-disk-bytes'], 0);
  const dir = values['offload-dir'];
  if (dir !== undefined && offloadDiskBytes === 0)
    throw new UsageError("--offload-dir needs --offload-disk-bytes N (the disk tier's capacity)");
  if (dir === undefined && offloadDiskBytes > 0)
    throw new UsageError('--offload-disk-bytes needs --offload-dir DIR (where the disk tier keeps its blocks)');
  if (dir !== undefined) {
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.W_OK);
    } catch (e) {
      throw new UsageError(
        `--offload-dir: ${dir}: ${(e as NodeJS.ErrnoException).code === 'EACCES' ? 'not writable' : (e as Error).message}`,
      );
    }
  }
  const pf = values['peer-fetch'] ?? 'on';
  if (pf !== 'on' && pf !== 'off') throw new UsageError(`--peer-fetch must be on or off, got '${pf}'`);
  return { offloadBytes, offloadDir: dir ?? null, offloadDiskBytes, peerFetch: pf === 'on' };
}

/** The same flags, for a child `serve worker` (what `up` passes on). */
export function offloadFlags(o: OffloadArgs): string[] {
  return [
    ...(o.offloadBytes > 0 ? ['--offload-bytes', String(o.offloadBytes)] : []),
    ...(o.offloadDir !== null ? ['--offload-dir', o.offloadDir, '--offload-disk-bytes', String(o.offloadDiskBytes)] : []),
    '--peer-fetch',
    o.peerFetch ? 'on' : 'off',
  ];
}

/** The attention flags of `generate`, `serve worker` and `up`. */
/**
 * `--model` with `--quantize`: the reference of the model quantized as it loads (`<path>#q8_0`,
 * the id workers announce and routers resolve). Dummy models name their type instead.
 */
export function modelRefArg(model: string, quantize: string | undefined): string {
  if (quantize === undefined) return model;
  if (!(LOAD_QUANT_DTYPES as readonly string[]).includes(quantize))
    throw new UsageError(`--quantize must be one of ${LOAD_QUANT_DTYPES.join(', ')}, got '${quantize}'`);
  if (model.startsWith('dummy:')) throw new UsageError(`--quantize: name the type in a dummy model instead (dummy:<preset>:${quantize})`);
  return `${model}#${quantize}`;
}

/** `--kv-cache-dtype`: how the KV cache stores rows. */
export function kvDtypeArg(v: string | undefined): KvDtype | undefined {
  if (v === undefined) return undefined;
  if (!(KV_DTYPES as readonly string[]).includes(v))
    throw new UsageError(`--kv-cache-dtype must be one of ${KV_DTYPES.join(', ')}, got '${v}'`);
  return v as KvDtype;
}

export const ATTENTION_OPTIONS = {
  attention: { type: 'string' },
  'kcache-topn': { type: 'string' },
  'kcache-full-layers': { type: 'string' },
} as const;

export interface AttentionArgs {
  attention: 'full' | 'kcache';
  kcache: { topN?: number; topNFraction?: number; fullLayers?: number };
}

/** --attention full|kcache, --kcache-topn N (an integer, or a fraction of the context in (0, 1)), --kcache-full-layers L. */
export function attentionArgs(values: { attention?: string; 'kcache-topn'?: string; 'kcache-full-layers'?: string }): AttentionArgs {
  const attention = values.attention ?? 'full';
  if (attention !== 'full' && attention !== 'kcache') throw new UsageError(`--attention must be full or kcache, got '${attention}'`);
  const kcache: AttentionArgs['kcache'] = {};
  const topn = values['kcache-topn'];
  if (topn !== undefined) {
    const n = Number(topn);
    if (topn.trim() === '' || !Number.isFinite(n) || n <= 0 || (n >= 1 && !Number.isInteger(n)))
      throw new UsageError(`--kcache-topn must be a positive integer or a fraction of the context in (0, 1), got '${topn}'`);
    if (n < 1) kcache.topNFraction = n;
    else kcache.topN = n;
  }
  if (values['kcache-full-layers'] !== undefined) kcache.fullLayers = intArg('kcache-full-layers', values['kcache-full-layers'], 0, 0);
  if (attention === 'full' && (topn !== undefined || values['kcache-full-layers'] !== undefined))
    throw new UsageError('--kcache-topn and --kcache-full-layers need --attention kcache');
  return { attention, kcache };
}

/** cache_aware's knobs on `serve router` and `up` (names as in SGLang's router where it has them). */
export const CACHE_AWARE_OPTIONS = {
  'load-cost-tokens': { type: 'string' },
  'balance-abs-threshold': { type: 'string' },
  'balance-rel-threshold': { type: 'string' },
  'host-hit-credit': { type: 'string' },
  'offload-ram-credit': { type: 'string' },
  'offload-disk-credit': { type: 'string' },
  'cache-threshold': { type: 'string' },
} as const;

export function cacheAwareArgs(values: Record<string, string | boolean | undefined>): {
  loadCostTokens?: number;
  balanceAbsThreshold?: number;
  balanceRelThreshold?: number;
  hostHitCredit?: number;
  offloadRamCredit?: number;
  offloadDiskCredit?: number;
  cacheThreshold?: number;
} {
  const v = (k: string) => values[k] as string | undefined;
  const out: ReturnType<typeof cacheAwareArgs> = {};
  if (v('load-cost-tokens') !== undefined) out.loadCostTokens = numArg('load-cost-tokens', v('load-cost-tokens'), 0);
  if (v('balance-abs-threshold') !== undefined) out.balanceAbsThreshold = numArg('balance-abs-threshold', v('balance-abs-threshold'), 0);
  if (v('balance-rel-threshold') !== undefined) out.balanceRelThreshold = numArg('balance-rel-threshold', v('balance-rel-threshold'), 0);
  if (v('host-hit-credit') !== undefined) out.hostHitCredit = numArg('host-hit-credit', v('host-hit-credit'), 0);
  if (v('offload-ram-credit') !== undefined) out.offloadRamCredit = numArg('offload-ram-credit', v('offload-ram-credit'), 0);
  if (v('offload-disk-credit') !== undefined) out.offloadDiskCredit = numArg('offload-disk-credit', v('offload-disk-credit'), 0);
  if (v('cache-threshold') !== undefined) out.cacheThreshold = numArg('cache-threshold', v('cache-threshold'), 0);
  for (const [k, x] of Object.entries(out))
    if (x < 0) throw new UsageError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be >= 0, got ${x}`);
  for (const k of ['hostHitCredit', 'offloadRamCredit', 'offloadDiskCredit'] as const) {
    const x = out[k];
    if (x !== undefined && x > 1)
      throw new UsageError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be in [0, 1], got ${x}`);
  }
  if (out.cacheThreshold !== undefined && out.cacheThreshold > 1)
    throw new UsageError(`--cache-threshold must be in [0, 1], got ${out.cacheThreshold}`);
  return out;
}

/** The same knobs back as flags (for `up` to hand to its routers). */
export function cacheAwareFlags(values: Record<string, string | boolean | undefined>): string[] {
  return Object.keys(CACHE_AWARE_OPTIONS).flatMap((k) => (values[k] === undefined ? [] : [`--${k}`, String(values[k])]));
}

/** Client authentication flags of `serve router` and `up`. */
export const AUTH_OPTIONS = {
  'api-keys-file': { type: 'string' },
  'no-auth': { type: 'boolean' },
} as const;

export const NO_AUTH_WARNING =
  'WARNING: authentication is off (--no-auth): anyone who can reach the router port can generate, and every caller shares one prefix cache';

/** --api-keys-file FILE (or KCACHE_API_KEYS_FILE), read and checked now; null with --no-auth. */
export function apiKeysArg(
  values: { 'api-keys-file'?: string; 'no-auth'?: boolean },
  required: boolean,
): { path: string; keys: ApiKeys } | null {
  const path = values['api-keys-file'] ?? process.env.KCACHE_API_KEYS_FILE;
  if (path !== undefined && values['no-auth']) throw new UsageError('give --api-keys-file or --no-auth, not both');
  if (path === undefined) {
    if (required && !values['no-auth'])
      throw new UsageError('--api-keys-file FILE (or KCACHE_API_KEYS_FILE) is required; --no-auth serves without authentication');
    return null;
  }
  try {
    return { path, keys: ApiKeys.load(path) };
  } catch (e) {
    if (e instanceof ApiKeysError) throw new UsageError(`--api-keys-file: ${e.message}`);
    throw e;
  }
}

/** One key of a keys file (for `up`'s own readiness calls). */
export function someApiKey(path: string): string {
  return (parseApiKeyLines(readApiKeysFile(path), path)[0] as { key: string }).key;
}

/** Mutual TLS between routers and workers (`kcache certs` makes the files). */
export const TLS_OPTIONS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

export function tlsArg(values: { 'tls-cert'?: string; 'tls-key'?: string; 'tls-ca'?: string }): ClusterTls | null {
  try {
    return loadClusterTls({ cert: values['tls-cert'], key: values['tls-key'], ca: values['tls-ca'] });
  } catch (e) {
    if (e instanceof ClusterTlsError) throw new UsageError(e.message);
    throw e;
  }
}

/** --chat-template FILE: read now, so a missing or broken file is one line at start, not a 400 on every chat. */
export function chatTemplateArg(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    loadChatTemplate('dummy:none', path);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return path;
}

/** A file the user named, as text; what stops it (no such file, a directory, no permission) as one phrase. */
export function readUserFile(path: string): { text: string } | { problem: string } {
  try {
    return { text: readFileSync(path, 'utf8') };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { problem: err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'a directory, not a file' : err.message };
  }
}

/**
 * The cluster's Redis for BullMQ's queues (whose commands must never give up), connected now, so
 * an unreachable Redis is one line (`fail` makes the error) rather than a command that hangs.
 */
export async function connectJobsRedis(url: string, fail: (message: string) => Error): Promise<RedisClient> {
  const redis = connectRedis(url, { maxRetriesPerRequest: null, lazyConnect: true });
  redis.on('error', () => {}); // reconnects by itself
  await redis.connect().catch((e: Error) => {
    redis.disconnect();
    throw fail(`redis: ${redactRedisUrl(url)}: ${e.message}`);
  });
  return redis;
}
