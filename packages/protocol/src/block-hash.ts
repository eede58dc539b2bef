/**
 * KV-cache block hashes (vLLM's automatic prefix caching scheme), defined once for the workers
 * and the routers, which must agree bit for bit.
 *
 *   hash(block i) = SHA-256( parent || u32le(token ids of block i) || utf8(extra) )[0..8)
 *
 * where parent is the previous block's hash (8 zero bytes for the first block) and extra is
 * `${modelId}\0${cacheSalt}`, so different models or tenants (salts) never share blocks. Only
 * full blocks have hashes. A hash is 16 lowercase hex characters (64 bits). SHA-256 from
 * node:crypto, not a faster non-cryptographic hash: a tenant must not be able to craft a
 * collision with another tenant's prefix, and hashing is a tiny share of a request's cost.
 */
import { createHash } from 'node:crypto';

export type BlockHash = string;

export const ROOT_PARENT: BlockHash = '0000000000000000';

export interface HashExtra {
  modelId: string;
  cacheSalt?: string;
}

export function extraKey({ modelId, cacheSalt = '' }: HashExtra): string {
  return `${modelId}\0${cacheSalt}`;
}

/** The hash of one full block given its parent's hash. */
export function hashBlock(parent: BlockHash, tokens: ArrayLike<number>, extra: HashExtra): BlockHash {
  const ids = Buffer.alloc(tokens.length * 4);
  for (let i = 0; i < tokens.length; i++) ids.writeUInt32LE(tokens[i] as number, i * 4);
  return createHash('sha256').update(Buffer.from(parent, 'hex')).update(ids).update(extraKey(extra), 'utf8').digest('hex').slice(0, 16);
}

/** Hashes of every full block of `tokens`, in order (a trailing partial block has none). */
export function hashBlocks(
  tokens: ArrayLike<number>,
  blockSize: number,
  extra: HashExtra,
  maxBlocks = Number.POSITIVE_INFINITY,
): BlockHash[] {
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
  const out: BlockHash[] = [];
  let parent = ROOT_PARENT;
  const ids = Array.from(tokens);
  for (let b = 0; (b + 1) * blockSize <= ids.length && out.length < maxBlocks; b++) {
    parent = hashBlock(parent, ids.slice(b * blockSize, (b + 1) * blockSize), extra);
    out.push(parent);
  }
  return out;
}
