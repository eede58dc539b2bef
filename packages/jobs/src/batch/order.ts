/**
 * Cache-aware batch order. Requests whose prompts start alike form a group; a group runs its
 * first request alone (its prefill puts the shared prefix in some worker's cache and the index),
 * then the rest, which the router sends to that worker as cache hits. In file order, requests of
 * one prefix arrive interleaved with others, on whichever worker is free, and each worker computes
 * the prefix again.
 *
 * Prompts are compared as text (chat messages as role and content in order): sorting puts every
 * prompt that shares a prefix next to the others, and a group is a run that shares at least
 * `minSharedChars` with its first member.
 */
import type { BatchRequest } from './format.js';

/** The text a request's prompt starts with: what requests sharing a cached prefix share. */
export function promptKey(r: BatchRequest): string {
  if (r.url === '/v1/chat/completions') {
    const messages = (r.body.messages ?? []) as { role?: unknown; content?: unknown }[];
    return messages.map((m) => `<${String(m.role)}>${contentText(m.content)}\n`).join('');
  }
  const p = r.body.prompt;
  if (typeof p === 'string') return p;
  if (Array.isArray(p) && p.every((x) => typeof x === 'number')) return `${p.join(',')},`;
  if (Array.isArray(p) && typeof p[0] === 'string') return p[0];
  return JSON.stringify(p ?? '');
}

function contentText(c: unknown): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.map((part) => (typeof part?.text === 'string' ? part.text : '')).join('');
  return '';
}

function sharedChars(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/**
 * Groups of request indices, each led by its earliest request (then the rest in file order);
 * groups in the order their leaders appear in the file.
 */
export function cacheAwareGroups(keys: readonly string[], minSharedChars = 64): number[][] {
  const sorted = keys.map((_, i) => i).sort((a, b) => ((keys[a] as string) < (keys[b] as string) ? -1 : keys[a] === keys[b] ? a - b : 1));
  const groups: number[][] = [];
  let head: string | null = null;
  for (const i of sorted) {
    const k = keys[i] as string;
    if (head !== null && sharedChars(head, k) >= minSharedChars) (groups.at(-1) as number[]).push(i);
    else {
      groups.push([i]);
      head = k;
    }
  }
  for (const g of groups) g.sort((a, b) => a - b);
  return groups.sort((a, b) => (a[0] as number) - (b[0] as number));
}

/** File order: every request on its own, as they come. */
export function fileOrderGroups(n: number): number[][] {
  return Array.from({ length: n }, (_, i) => [i]);
}
