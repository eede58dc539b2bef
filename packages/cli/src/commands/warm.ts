/**
 * `kcache warm --prompts FILE [--replicas N]`: prefills prompts (system prompts, few-shot
 * headers) on N workers each, through the router, so the first real requests that start with them
 * hit the cache. With API keys, warm with the key of the tenant whose requests should hit.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_ADDRESS, KcacheClient, KcacheError } from '@kcache/client';
import { parseWarmPrompts, WarmInputError, warm } from '@kcache/jobs';
import { intArg, readUserFile, UsageError } from '../args.js';

export const WARM_USAGE = `kcache warm --prompts FILE [--replicas 1] [--addr ${DEFAULT_ADDRESS}] [--api-key KEY] [--model M] [--json]`;

/** Warm-up that could not run: one line, exit 1. */
export class WarmError extends Error {
  override readonly name = 'WarmError';
}

export async function warmCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      prompts: { type: 'string' },
      replicas: { type: 'string' },
      addr: { type: 'string' },
      'api-key': { type: 'string' },
      model: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (!values.prompts) throw new UsageError('--prompts FILE is required (one prompt a line)');
  const replicas = intArg('replicas', values.replicas, 1, 1);
  const read = readUserFile(values.prompts);
  if ('problem' in read) throw new WarmError(`${values.prompts}: ${read.problem}`);
  const { text } = read;
  let prompts: ReturnType<typeof parseWarmPrompts>;
  try {
    prompts = parseWarmPrompts(text);
  } catch (e) {
    if (e instanceof WarmInputError) throw new WarmError(`${values.prompts}: ${e.message}`);
    throw e;
  }
  const client = new KcacheClient(values.addr ?? DEFAULT_ADDRESS, { apiKey: values['api-key'] ?? process.env.KCACHE_API_KEY });
  try {
    const r = await warm({ client, prompts, replicas, model: values.model });
    if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      const each = Math.min(replicas, r.workers.length);
      process.stdout.write(
        `warmed ${prompts.length} prompt(s) of ${r.model} on ${each} worker(s) each: ${r.prefills} prefills, ${r.promptTokens} prompt tokens (${r.cachedTokens} were cached already)\n`,
      );
    }
  } catch (e) {
    if (e instanceof KcacheError) throw new WarmError(`${e.code}: ${e.details}`);
    throw e;
  } finally {
    client.close();
  }
}
