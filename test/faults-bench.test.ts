// The fault suite end to end (`kcache bench faults`): real processes over loopback, each case on
// its own cluster of dummy:tiny workers with the default liveness settings. SIGSTOP (25 s of
// freeze) and the overload latency are left to the benchmark; the SIGSTOP behaviour is tested in
// router-migration and router-keepalive, the overload statuses in router-faults.
import { join } from 'node:path';
import { formatFaultsBench, runFaultsBench } from '@kcache/bench';
import { expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

test('SIGKILL of a worker under 48 streams, a drain with a 100 ms grace, a Redis restart, poison prompts: every target met', async () => {
  const rows = await runFaultsBench({
    cli: join(REPO_ROOT, 'packages/cli/dist/main.js'),
    model: 'dummy:tiny',
    cases: ['sigkill', 'drain', 'redis-restart', 'poison'],
    log: () => {},
  });
  const table = formatFaultsBench(rows);
  for (const row of rows) expect(row.met, table).toBe(true);
  expect(rows.find((x) => x.case === 'sigkill')).toMatchObject({ sent: 48, completed: 48, lost: 0, stalled: 0 });
  expect(rows.find((x) => x.case === 'sigkill')?.figure).toMatch(/^identical 48\/48, [1-9]\d* migrated/);
  expect(rows.find((x) => x.case === 'drain')?.figure).toMatch(/^identical 24\/24, [1-9]\d* migrated/);
}, 180_000);
