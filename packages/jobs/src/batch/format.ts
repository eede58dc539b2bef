/**
 * OpenAI's Batch file formats: the input JSONL (one request a line: `custom_id`, `method`, `url`,
 * `body`) and the output JSONL (one line per `custom_id`: the response's status code and body, or
 * an error when no response came). A file with any bad line is refused whole, each problem named
 * by line and field, as OpenAI's batch validation does.
 */
import { randomUUID } from 'node:crypto';

export const BATCH_URLS = ['/v1/completions', '/v1/chat/completions'] as const;
export type BatchUrl = (typeof BATCH_URLS)[number];

export interface BatchRequest {
  customId: string;
  url: BatchUrl;
  body: Record<string, unknown>;
}

export class BatchInputError extends Error {
  override readonly name = 'BatchInputError';
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? (problems[0] as string) : `${problems[0]} (and ${problems.length - 1} more problems)`);
  }
}

/** How many problems an error lists at most (a wrong file would otherwise name every line). */
const MAX_PROBLEMS = 20;

/** The requests of a Batch input file; throws BatchInputError naming each bad line (1-based) and field. */
export function parseBatchInput(text: string): BatchRequest[] {
  const out: BatchRequest[] = [];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && problems.length < MAX_PROBLEMS; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    const n = i + 1;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      problems.push(`line ${n}: not valid JSON (${(e as Error).message})`);
      continue;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      problems.push(`line ${n}: a request must be a JSON object`);
      continue;
    }
    const r = v as Record<string, unknown>;
    const problem = checkLine(r);
    if (problem) {
      problems.push(`line ${n}: ${problem}`);
      continue;
    }
    const customId = r.custom_id as string;
    const first = seen.get(customId);
    if (first !== undefined) {
      problems.push(`line ${n}: custom_id '${customId}' is already used on line ${first}`);
      continue;
    }
    seen.set(customId, n);
    out.push({ customId, url: r.url as BatchUrl, body: r.body as Record<string, unknown> });
  }
  if (problems.length > 0) throw new BatchInputError(problems);
  if (out.length === 0) throw new BatchInputError(['the file holds no requests']);
  return out;
}

function checkLine(r: Record<string, unknown>): string | null {
  if (typeof r.custom_id !== 'string' || r.custom_id === '') return 'custom_id: a non-empty string is required';
  if (r.custom_id.length > 512) return 'custom_id: at most 512 characters';
  if (r.method !== 'POST') return `method: must be "POST", got ${JSON.stringify(r.method ?? null)}`;
  if (!(BATCH_URLS as readonly unknown[]).includes(r.url))
    return `url: must be one of ${BATCH_URLS.join(', ')}, got ${JSON.stringify(r.url ?? null)}`;
  const body = r.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body: a JSON object is required';
  const b = body as Record<string, unknown>;
  if (b.stream === true) return 'body.stream: batch requests are not streamed';
  if (r.url === '/v1/completions' && b.prompt === undefined) return 'body.prompt: required for /v1/completions';
  if (r.url === '/v1/chat/completions' && !Array.isArray(b.messages)) return 'body.messages: an array is required for /v1/chat/completions';
  return null;
}

/** What one request came to: an HTTP answer (any status), or no answer at all. */
export type BatchOutcome =
  | { kind: 'response'; statusCode: number; requestId: string; body: unknown }
  | { kind: 'error'; code: string; message: string };

/** One output line, as OpenAI's Batch API writes it. */
export function outputLine(customId: string, o: BatchOutcome): string {
  const id = `batch_req_${randomUUID().replaceAll('-', '')}`;
  return JSON.stringify(
    o.kind === 'response'
      ? { id, custom_id: customId, response: { status_code: o.statusCode, request_id: o.requestId, body: o.body }, error: null }
      : { id, custom_id: customId, response: null, error: { code: o.code, message: o.message } },
  );
}

/** A request's outcome counts as completed when it got a 2xx answer, else as failed. */
export const succeeded = (o: BatchOutcome) => o.kind === 'response' && o.statusCode >= 200 && o.statusCode < 300;
