#!/usr/bin/env node
import { ModelLoadError } from '@kcache/models';
import { WorkerIdInUseError, WorkerStartError } from '@kcache/worker';
import { UsageError } from './args.js';
import { ASK_USAGE, AskError, askCommand } from './commands/ask.js';
import { BENCH_USAGE } from './commands/bench-usage.js';
import { CERTS_USAGE, CertsError, certsCommand } from './commands/certs.js';
import { GENERATE_USAGE, generateCommand } from './commands/generate.js';
import { HEALTH_USAGE, healthCommand } from './commands/health.js';
import { SERVE_USAGE, serveCommand } from './commands/serve.js';
import { UP_USAGE, upCommand } from './commands/up.js';

const USAGE = `usage:
  ${UP_USAGE}
  ${ASK_USAGE}
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

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'generate':
      return generateCommand(rest);
    case 'serve':
      return serveCommand(rest);
    case 'bench':
      return benchCommand(rest);
    case 'up':
      return upCommand(rest);
    case 'ask':
      return askCommand(rest);
    case 'health':
      return healthCommand(rest);
    case 'certs':
      return certsCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      throw new UsageError(`unknown command '${command}' (try: kcache help)`);
  }
}

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
    err.code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(oneLine ? `kcache: ${err.message.split('\n')[0]}\n` : `kcache: ${err.stack ?? err.message}\n`);
  process.exitCode = e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
});
