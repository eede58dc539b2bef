// A persistent pool of worker threads for data-parallel loops. Workers spin briefly between
// jobs (a decode step issues hundreds of small parallel loops back to back, and waking a
// sleeping thread costs more than most of them) and then sleep on a condition variable.
//
// Tasks are handed out like OpenMP's static schedule with stealing: thread t owns the t-th
// contiguous share of [0, n_tasks) and claims its tasks in order from a counter of its own (a
// cache line no other thread writes while it has work), then takes what is left of the other
// shares. One shared counter for every claim made each claim a cache-line transfer between cores
// (hundreds of ns on a VM, comparable to a task of a decode step's matmul), and interleaved tasks
// broke each thread's run over the weights into pieces the hardware prefetcher restarts on.
//
// The caller waits only for workers running one of the job's tasks, not for every worker to check
// in: a worker that has not joined when the last task is claimed (asleep, or its CPU taken by the
// host) joins nothing of that job. Each share is tagged with its job's generation, so a late
// worker claims nothing of the job it missed nor of a later one until it has seen that one's
// generation. Waiting for every worker to acknowledge each job cost a decode step of smol135 about
// 0.9 ms on this 2-vCPU VM (5 of its ~180 loops a step, ~165 us each; docs/BENCHMARKS.md).
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kc {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // total threads including the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(task, thread) for task in [0, n_tasks), each task once (see above for the order).
  // Not reentrant: one parallel_for at a time (the engine runs one step at a time).
  // share_begin (size() + 1 entries, nondecreasing, from 0 to n_tasks): thread t's share is
  // [share_begin[t], share_begin[t + 1]) instead of an equal count of tasks, for a caller whose
  // tasks differ in size (matmul.cpp balances bytes, not tasks).
  void parallel_for(int n_tasks, const std::function<void(int, int)>& fn, const int* share_begin = nullptr);

 private:
  // Thread t's share of a job: its tasks [next, end), the word tagged with the job's generation
  // (low 32 bits) so that a worker still on an earlier job claims nothing of a later one.
  struct alignas(64) Share {
    std::atomic<uint64_t> word{0};  // tag << 32 | next
    std::atomic<int> end{0};
  };
  // A thread's state (tag << 1 | busy): busy from just before a claim until its task has run.
  struct alignas(64) State {
    std::atomic<uint64_t> v{0};
  };

  void worker_loop(int thread_id);
  void run_tasks(int thread_id, uint32_t tag);
  static int claim(Share& s, uint32_t tag);  // a task of the job tagged `tag`, or -1

  std::vector<std::thread> workers_;
  std::vector<Share> shares_;
  std::vector<State> states_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  std::atomic<const std::function<void(int, int)>*> fn_{nullptr};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kc
