/** `kcache health`: grpc.health.v1 Check against a router or worker; exit 0 only when SERVING (container health checks). */
import { parseArgs } from 'node:util';
import { DEFAULT_ADDRESS, KcacheClient, KcacheError } from '@kcache/client';
import { intArg } from '../args.js';
import { AskError } from './ask.js';

export const HEALTH_USAGE = `kcache health [--addr ${DEFAULT_ADDRESS}] [--service NAME] [--timeout-ms 2000]`;

export async function healthCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { addr: { type: 'string' }, service: { type: 'string' }, 'timeout-ms': { type: 'string' } },
  });
  const client = new KcacheClient(values.addr ?? DEFAULT_ADDRESS);
  try {
    const status = await client.checkHealth(values.service ?? '', intArg('timeout-ms', values['timeout-ms'], 2000, 1));
    process.stdout.write(`${status}\n`);
    if (status !== 'SERVING') process.exitCode = 1;
  } catch (e) {
    if (e instanceof KcacheError) throw new AskError(`${client.address}: ${e.code}: ${e.details}`);
    throw e;
  } finally {
    client.close();
  }
}
