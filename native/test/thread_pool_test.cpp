// The thread pool under churn: many small jobs back to back on more threads than cores, so that
// workers are often descheduled or asleep when a job starts and join it late or not at all. Each
// task must run exactly once, and its writes must be visible to the caller when parallel_for
// returns, whether the caller gives each thread's share or not. Exits non-zero on the first
// violation (test/thread-pool.test.ts runs it).
//
//   kcache_pool_test [jobs]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "thread_pool.h"

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 100000;
  for (int threads : {2, 3, 8}) {
    kc::ThreadPool pool(threads);
    std::mt19937 rng(static_cast<unsigned>(threads));
    std::vector<int> hits(4096);
    std::vector<int> by(4096);
    for (int job = 0; job < jobs; ++job) {
      // mostly a few tasks (a decode step's loops), now and then thousands
      const int n = 1 + static_cast<int>(rng() % (job % 97 == 0 ? 4096 : 40));
      std::fill(hits.begin(), hits.begin() + n, 0);
      // every other job gives the shares explicitly: random, some of them empty
      std::vector<int> share_begin(threads + 1, 0);
      for (int t = 1; t < threads; ++t) share_begin[t] = static_cast<int>(rng() % (n + 1));
      share_begin[threads] = n;
      std::sort(share_begin.begin(), share_begin.end());
      pool.parallel_for(
          n,
          [&](int t, int thread) {
            hits[t] += 1;
            by[t] = thread;
            if (t % 5 == 0)
              for (volatile int k = 0; k < 200; ++k) {
              }
          },
          job % 2 ? share_begin.data() : nullptr);
      for (int i = 0; i < n; ++i) {
        if (hits[i] != 1 || by[i] < 0 || by[i] >= threads) {
          std::fprintf(stderr, "threads %d, job %d (%d tasks): task %d ran %d times (thread %d)\n", threads, job, n, i, hits[i], by[i]);
          return 1;
        }
      }
    }
    std::printf("threads %d: %d jobs, every task once\n", threads, jobs);
  }
  return 0;
}
