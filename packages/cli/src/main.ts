#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { ModelLoadError } from '@kcache/models';
import { WorkerIdInUseError, WorkerStartError } from '@kcache/worker';
import { UsageError } from './args.js';
import { ASK_USAGE, AskError, askCommand } from './commands/ask.js';
import { BATCH_USAGE, BatchCommandError, batchCommand } from './commands/batch.js';
import { BENCH_USAGE } from './commands/bench-usage.js';
import { CERTS_USAGE, CertsError, certsCommand } from './commands/certs.js';
import { GENERATE_USAGE, generateCommand } from './commands/generate.js';
import { HEALTH_USAGE, healthCommand } from './commands/health.js';
import { SERVE_USAGE, serveCommand } from './commands/serve.js';
import { UP_USAGE, upCommand } from './commands/up.js';
import { WARM_USAGE, WarmError, warmCommand } from './commands/warm.js';

const USAGE = `usage:
  ${UP_USAGE}
  ${ASK_USAGE}
  ${BATCH_USAGE}
  ${WARM_USAGE}
  ${GENERATE_USAGE}
  ${SERVE_USAGE}
  ${HEALTH_USAGE}
  ${CERTS_USAGE}
  ${BENCH_USAGE}`;

/** Loaded only here: the benchmarks (and node-llama-cpp) are a development install, not part of serving. */
async function benchCommand(argv: string[]): Promise<void> {
  let bench: typeof import('./commands/bench.js');
  try {
    bench = await import('./commands/bench.js');
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND')
      throw new UsageError('kcache bench needs the development install (pnpm install in the repository); this install serves only');
    throw e;
  }
  return bench.benchCommand(argv);
}

const COMMANDS: Record<string, { usage: string; run: (argv: string[]) => Promise<void> }> = {
  up: { usage: UP_USAGE, run: upCommand },
  ask: { usage: ASK_USAGE, run: askCommand },
  batch: { usage: BATCH_USAGE, run: batchCommand },
  warm: { usage: WARM_USAGE, run: warmCommand },
  generate: { usage: GENERATE_USAGE, run: generateCommand },
  serve: { usage: SERVE_USAGE, run: serveCommand },
  health: { usage: HEALTH_USAGE, run: healthCommand },
  certs: { usage: CERTS_USAGE, run: certsCommand },
  bench: { usage: BENCH_USAGE, run: benchCommand },
};

/** Edit distance, for "did you mean" (Levenshtein's, one row at a time). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length] as number;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`kcache ${pkg.version}\n`);
    return;
  }
  const c = COMMANDS[command];
  if (!c) {
    const near = Object.keys(COMMANDS)
      .map((name) => ({ name, d: distance(command, name) }))
      .sort((x, y) => x.d - y.d)[0];
    const hint = near && near.d <= 2 ? `did you mean '${near.name}'? ` : '';
    throw new UsageError(`unknown command '${command}' (${hint}try: kcache help)`);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage:\n  ${c.usage}\n`);
    return;
  }
  return c.run(rest);
}

// a reader that stops early (kcache batch results ID | head) is not an error
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).catch((e: unknown) => {
  const err = e as Error & { code?: string };
  // Mistakes in what the user gave are one readable line; anything else is a bug and keeps its stack.
  const oneLine =
    e instanceof UsageError ||
    e instanceof ModelLoadError ||
    e instanceof RangeError ||
    e instanceof AskError ||
    e instanceof WorkerIdInUseError ||
    e instanceof WorkerStartError ||
    e instanceof CertsError ||
    e instanceof BatchCommandError ||
    e instanceof WarmError ||
    err.code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(oneLine ? `kcache: ${err.message.split('\n')[0]}\n` : `kcache: ${err.stack ?? err.message}\n`);
  process.exitCode = e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
});
