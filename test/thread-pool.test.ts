// The CPU backend's thread pool (native/cpu/thread_pool.cpp) under churn: native/test/
// thread_pool_test.cpp runs 100,000 jobs of 1 to 4,096 tasks on 2, 3 and 8 threads (more threads
// than this machine's cores, so workers are often descheduled or asleep when a job starts and
// join late or not at all) and checks that every task ran exactly once and that its writes were
// visible when parallel_for returned. Built by `pnpm build` beside the addon.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

test('every task of every job runs exactly once, finished when parallel_for returns', () => {
  const out = execFileSync(join(REPO_ROOT, 'native/build/kcache_pool_test'), ['100000'], { encoding: 'utf8', timeout: 120_000 });
  for (const threads of [2, 3, 8]) expect(out).toContain(`threads ${threads}: 100000 jobs, every task once`);
});
