// A persistent pool of worker threads for data-parallel loops. Workers spin briefly between
// jobs (a decode step issues hundreds of small parallel loops back to back, and waking a
// sleeping thread costs more than most of them) and then sleep on a condition variable.
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
  // Runs fn(task, thread) for task in [0, n_tasks); tasks are handed out dynamically.
  // Not reentrant: one parallel_for at a time (the engine runs one step at a time).
  void parallel_for(int n_tasks, const std::function<void(int, int)>& fn);

 private:
  void worker_loop(int thread_id);
  void run_tasks(int thread_id);

  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> next_task_{0};
  std::atomic<int> busy_workers_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  int n_tasks_ = 0;
  const std::function<void(int, int)>* fn_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kc
