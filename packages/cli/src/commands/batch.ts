/**
 * `kcache batch submit|status|results|cancel`: offline batches in OpenAI's Batch file format, run
 * by the cluster's batch runners (`kcache serve batch`) through the router, at a lower priority
 * than interactive traffic. Batches live in the cluster's Redis (`--redis-url` or REDIS_URL).
 */
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import type { RedisClient } from '@kcache/block-index';
import {
  type BatchInfo,
  BatchInputError,
  type BatchOrder,
  type BatchPriority,
  BatchStore,
  batchStatus,
  cancelBatch,
  evictionWarning,
  submitBatch,
} from '@kcache/jobs';
import { connectJobsRedis, readUserFile, redisUrlArg, UsageError } from '../args.js';

export const BATCH_USAGE = `kcache batch submit FILE [--wait] [--json] [--priority high|normal|low] [--order cache|file] [--redis-url URL]
  kcache batch status ID [--json] [--redis-url URL]
  kcache batch results ID [--redis-url URL] > out.jsonl
  kcache batch cancel ID [--json] [--redis-url URL]`;

/** A batch that cannot be submitted or found: one line, exit 1. */
export class BatchCommandError extends Error {
  override readonly name = 'BatchCommandError';
}

const PRIORITY_NAMES: BatchPriority[] = ['high', 'normal', 'low'];
const ORDERS: BatchOrder[] = ['cache', 'file'];

export async function batchCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: {
      'redis-url': { type: 'string' },
      wait: { type: 'boolean' },
      json: { type: 'boolean' },
      priority: { type: 'string' },
      order: { type: 'string' },
    },
  });
  if (!['submit', 'status', 'results', 'cancel'].includes(sub ?? ''))
    throw new UsageError(`batch: unknown subcommand '${sub ?? ''}' (available: submit, status, results, cancel)`);
  if (positionals.length !== 1) throw new UsageError(`batch ${sub}: give one ${sub === 'submit' ? 'file' : 'batch id'}`);
  const arg = positionals[0] as string;
  const url = redisUrlArg(values['redis-url'] ?? process.env.REDIS_URL);
  if (!url) throw new UsageError('batch: give the cluster\'s Redis with --redis-url URL or REDIS_URL (kcache up prints it as "redisUrl")');
  if (sub !== 'submit' && (values.wait || values.priority || values.order))
    throw new UsageError(`batch ${sub}: --wait, --priority and --order belong to batch submit`);
  const redis = await connectJobsRedis(url, (m) => new BatchCommandError(m));
  try {
    if (sub === 'submit') await submit(redis, arg, values);
    else if (sub === 'status') await show(redis, arg, values.json ?? false);
    else if (sub === 'results') {
      if (!(await new BatchStore(redis).info(arg))) throw new BatchCommandError(`no batch '${arg}'`);
      for await (const line of new BatchStore(redis).results(arg)) process.stdout.write(`${line}\n`);
    } else {
      const info = await cancelBatch(redis, arg);
      if (!info) throw new BatchCommandError(`no batch '${arg}'`);
      print(info, values.json ?? false);
    }
  } finally {
    redis.disconnect();
  }
}

async function submit(redis: RedisClient, file: string, v: { wait?: boolean; json?: boolean; priority?: string; order?: string }) {
  const priority = (v.priority ?? 'normal') as BatchPriority;
  if (!PRIORITY_NAMES.includes(priority))
    throw new UsageError(`--priority must be one of ${PRIORITY_NAMES.join(', ')}, got '${v.priority}'`);
  const order = (v.order ?? 'cache') as BatchOrder;
  if (!ORDERS.includes(order)) throw new UsageError(`--order must be one of ${ORDERS.join(', ')}, got '${v.order}'`);
  const read = readUserFile(file);
  if ('problem' in read) throw new BatchCommandError(`${file}: ${read.problem}`);
  const { text } = read;
  const warning = await evictionWarning(redis);
  if (warning) process.stderr.write(`kcache: warning: ${warning}\n`);
  let info: BatchInfo;
  try {
    info = await submitBatch(redis, text, { order, priority, inputName: basename(file) });
  } catch (e) {
    if (e instanceof BatchInputError) throw new BatchCommandError(`${file}: ${e.message}`);
    throw e;
  }
  if (!v.wait) {
    print(info, v.json ?? false);
    return;
  }
  const bar = new ProgressLine(process.stderr.isTTY === true);
  for (;;) {
    const now = (await batchStatus(redis, info.id)) as BatchInfo;
    bar.show(now);
    if (now.status === 'completed' || now.status === 'cancelled') {
      bar.end();
      print(now, v.json ?? false);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function show(redis: RedisClient, id: string, json: boolean) {
  const info = await batchStatus(redis, id);
  if (!info) throw new BatchCommandError(`no batch '${id}'`);
  if (json) print(info, true);
  else process.stdout.write(`${id} ${info.status}  ${progressText(info, Date.now())}\n`);
}

function print(info: BatchInfo, json: boolean) {
  if (json) process.stdout.write(`${JSON.stringify(info)}\n`);
  else {
    const c = info.counts;
    process.stdout.write(`${info.id} ${info.status}: ${c.completed} completed, ${c.failed} failed of ${c.total}\n`);
  }
}

/**
 * One line of progress: `[#####-----] 30/60 done, 1 failed, 12,480 tokens, ETA 9 s`; the ETA
 * assumes the pace since the batch was created.
 */
export function progressText(info: BatchInfo, nowMs: number, width = 24): string {
  const { total, completed, failed } = info.counts;
  const done = completed + failed;
  const filled = total > 0 ? Math.round((width * done) / total) : width;
  const tokens = info.usage.promptTokens + info.usage.completionTokens;
  const elapsed = Math.max(0, nowMs - info.createdAt) / 1000;
  const finished = info.status === 'completed' || info.status === 'cancelled';
  const eta = finished || done === 0 ? '' : `, ETA ${Math.ceil((elapsed / done) * (total - done)).toLocaleString('en-US')} s`;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} done, ${failed} failed, ${tokens.toLocaleString('en-US')} tokens${eta}`;
}

/** `--wait`'s progress on stderr: one line rewritten on a terminal; a line every 5 s in a log. */
class ProgressLine {
  private last = 0;
  private drawn = false;
  constructor(private readonly tty: boolean) {}

  show(info: BatchInfo): void {
    const now = Date.now();
    if (this.tty) {
      process.stderr.write(`\r\x1b[K${progressText(info, now)}`);
      this.drawn = true;
    } else if (now - this.last >= 5000) {
      process.stderr.write(`${progressText(info, now)}\n`);
      this.last = now;
    }
  }

  end(): void {
    if (this.tty && this.drawn) process.stderr.write('\n');
  }
}
