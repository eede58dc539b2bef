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
  void parallel_for(int n_tasks, const std::function<void(int, int)>& fn);

 private:
  void worker_loop(int thread_id);
  void run_tasks(int thread_id);

  // Thread t's share of the current job: tasks [next, end) not yet claimed.
  struct alignas(64) Share {
    std::atomic<int> next{0};
    int end = 0;
  };

  std::vector<std::thread> workers_;
  std::vector<Share> shares_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> busy_workers_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int, int)>* fn_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kc
