/**
 * Cache warm-up: which prompts to prefill on which workers. A prompt goes to `replicas` distinct
 * workers, and consecutive prompts start on consecutive workers, so the prefixes (and the
 * prefill work) spread over the cluster. The prompts file is one prompt a line: plain text, a
 * JSON string (for prompts with line breaks), or a JSON object `{"messages": [...]}` for a chat
 * (rendered by the router with the model's chat template).
 */
import type { ChatMessage } from '@kcache/client';

export type WarmPrompt = { text: string } | { messages: ChatMessage[] };

export class WarmInputError extends Error {
  override readonly name = 'WarmInputError';
}

export function parseWarmPrompts(text: string): WarmPrompt[] {
  const out: WarmPrompt[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trimEnd();
    if (line.trim() === '') continue;
    if (!line.startsWith('"') && !line.startsWith('{')) {
      out.push({ text: line });
      continue;
    }
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new WarmInputError(`line ${i + 1}: not valid JSON (${(e as Error).message}); a plain-text prompt must not start with " or {`);
    }
    if (typeof v === 'string') out.push({ text: v });
    else if (Array.isArray((v as { messages?: unknown }).messages)) out.push({ messages: (v as { messages: ChatMessage[] }).messages });
    else throw new WarmInputError(`line ${i + 1}: a JSON line must be a string or an object with "messages"`);
  }
  if (out.length === 0) throw new WarmInputError('the file holds no prompts');
  return out;
}

/** For each prompt, the workers to prefill it on (replicas of them, distinct, fewer if the cluster has fewer). */
export function warmPlan(prompts: number, workerIds: readonly string[], replicas: number): string[][] {
  const n = Math.min(replicas, workerIds.length);
  return Array.from({ length: prompts }, (_, i) => Array.from({ length: n }, (_, k) => workerIds[(i + k) % workerIds.length] as string));
}
