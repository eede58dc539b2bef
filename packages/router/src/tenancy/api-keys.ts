/**
 * Client API keys: a file of `<key> <tenant> [requests_per_s [tokens_per_s]]` lines (`#` starts
 * a comment), and the bearer token of a call's `authorization` metadata. Keys are held by their
 * SHA-256 digest only: a lookup's timing says nothing about the keys, and a heap dump holds none.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface Tenant {
  id: string;
  /** Per-tenant limits from the key's line (undefined: the router's defaults). */
  requestsPerS?: number;
  tokensPerS?: number;
}

export class ApiKeysError extends Error {
  override readonly name = 'ApiKeysError';
}

const TENANT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const digest = (key: string) => createHash('sha256').update(key).digest('hex');

export interface ApiKeyLine extends Tenant {
  key: string;
}

/** The lines of an API keys file; `source` names it in errors (`FILE:LINE: ...`). */
export function parseApiKeyLines(text: string, source: string): ApiKeyLine[] {
  const lines: ApiKeyLine[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const where = `${source}:${i + 1}`;
    const [key, id, rps, tps, ...rest] = line.split(/\s+/) as [string, string | undefined, string?, string?, ...string[]];
    if (id === undefined || rest.length > 0) throw new ApiKeysError(`${where}: expected '<key> <tenant> [requests_per_s [tokens_per_s]]'`);
    if (key.length < 16) throw new ApiKeysError(`${where}: the key is shorter than 16 characters`);
    if (!TENANT_ID.test(id))
      throw new ApiKeysError(`${where}: tenant '${id}' must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)`);
    const rate = (v: string | undefined, name: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new ApiKeysError(`${where}: ${name} '${v}' is not a number ≥ 0`);
      return n;
    };
    if (seen.has(key)) throw new ApiKeysError(`${where}: this key is listed twice`);
    seen.add(key);
    lines.push({ key, id, requestsPerS: rate(rps, 'requests_per_s'), tokensPerS: rate(tps, 'tokens_per_s') });
  });
  if (lines.length === 0) throw new ApiKeysError(`${source}: no keys (one '<key> <tenant>' per line)`);
  return lines;
}

export function readApiKeysFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ApiKeysError(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

export class ApiKeys {
  private constructor(private readonly byDigest: Map<string, Tenant>) {}

  static parse(text: string, source: string): ApiKeys {
    return new ApiKeys(new Map(parseApiKeyLines(text, source).map(({ key, ...tenant }) => [digest(key), tenant])));
  }

  static load(path: string): ApiKeys {
    return ApiKeys.parse(readApiKeysFile(path), path);
  }

  /** The tenant a key belongs to, or null. */
  tenant(key: string): Tenant | null {
    return this.byDigest.get(digest(key)) ?? null;
  }

  get size(): number {
    return this.byDigest.size;
  }
}

/** The key of `authorization: Bearer <key>`, or null when the header is missing or malformed. */
export function bearerToken(values: readonly (string | Buffer)[]): string | null {
  if (values.length !== 1) return null;
  const m = /^Bearer\s+(\S+)$/i.exec(String(values[0]).trim());
  return m ? (m[1] as string) : null;
}
