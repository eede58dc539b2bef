/**
 * `kcache ask "prompt"`: streams a generation from a router (by default the one `kcache up`
 * starts) and prints the usage and the serving worker; `--json` prints one object instead.
 * `--chat` sends the prompt as a user message (after `--system`'s), rendered with the model's
 * chat template; `--logprobs N` reports each token's log probability and N alternatives.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_ADDRESS, KcacheClient, KcacheError } from '@kcache/client';
import { intArg, numArg, UsageError } from '../args.js';

export const ASK_USAGE = `kcache ask [--addr ${DEFAULT_ADDRESS}] [--api-key KEY] [--max-tokens 32] [--temperature T] [--seed S] [--model M]
    [--chat [--system TEXT]] [--logprobs N] [--ignore-eos] [--kcache-topn N] [--timeout-ms 60000] [--json] "prompt"`;

export async function askCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      addr: { type: 'string' },
      'api-key': { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      seed: { type: 'string' },
      model: { type: 'string' },
      chat: { type: 'boolean' },
      system: { type: 'string' },
      logprobs: { type: 'string' },
      'ignore-eos': { type: 'boolean' },
      'kcache-topn': { type: 'string' },
      'timeout-ms': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('give the prompt as one argument (quote it)');
  if (values.system !== undefined && !values.chat) throw new UsageError('--system needs --chat');
  const prompt = positionals[0] as string;
  const input = values.chat
    ? {
        messages: [...(values.system !== undefined ? [{ role: 'system', content: values.system }] : []), { role: 'user', content: prompt }],
      }
    : { text: prompt };
  const logprobs = values.logprobs === undefined ? undefined : intArg('logprobs', values.logprobs, 0);
  if (logprobs !== undefined && logprobs > 20) throw new UsageError(`--logprobs must be at most 20, got ${logprobs}`);
  const client = new KcacheClient(values.addr ?? DEFAULT_ADDRESS, { apiKey: values['api-key'] ?? process.env.KCACHE_API_KEY });
  const started = performance.now();
  let firstText: number | null = null;
  try {
    const r = await client.generate(
      {
        ...input,
        logprobs,
        maxTokens: intArg('max-tokens', values['max-tokens'], 32, 1),
        temperature: numArg('temperature', values.temperature, 1),
        seed: values.seed === undefined ? undefined : intArg('seed', values.seed, 0),
        model: values.model,
        ignoreEos: values['ignore-eos'] ?? false,
        kcacheTopN: values['kcache-topn'] === undefined ? undefined : intArg('kcache-topn', values['kcache-topn'], 0, 1),
        deadlineMs: intArg('timeout-ms', values['timeout-ms'], 60_000, 1),
      },
      (text) => {
        firstText ??= performance.now();
        if (!values.json) process.stdout.write(text);
      },
    );
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({
          text: r.text,
          tokenIds: r.tokenIds,
          ...(logprobs !== undefined ? { logprobs: r.logprobs } : {}),
          finishReason: r.finishReason,
          usage: r.usage,
          workerId: r.workerId,
        })}\n`,
      );
    } else {
      const u = r.usage;
      const ttft = firstText === null ? '' : `, first text after ${(firstText - started).toFixed(0)} ms`;
      process.stdout.write('\n');
      for (const l of r.logprobs)
        process.stderr.write(
          `  token ${l.tokenId} logprob ${l.logprob.toFixed(4)}${l.top.length ? `  top: ${l.top.map((t) => `${t.tokenId} ${t.logprob.toFixed(4)}`).join(', ')}` : ''}\n`,
        );
      process.stderr.write(
        `[${r.workerId}] ${u.promptTokens} prompt tokens (${u.cachedTokens} cached), ${u.completionTokens} generated, finish ${r.finishReason}${ttft}, ${(performance.now() - started).toFixed(0)} ms\n`,
      );
    }
  } catch (e) {
    if (e instanceof KcacheError) {
      const hint =
        e.code === 'UNAVAILABLE'
          ? ` (is a cluster running at ${client.address}? start one with: pnpm -s kcache up)`
          : e.code === 'UNAUTHENTICATED'
            ? ' (give the key with --api-key or KCACHE_API_KEY)'
            : '';
      throw new AskError(`${e.code}: ${e.details}${hint}`);
    }
    throw e;
  } finally {
    client.close();
  }
}

/** A failed request: one line, exit 1. */
export class AskError extends Error {
  override readonly name = 'AskError';
}
