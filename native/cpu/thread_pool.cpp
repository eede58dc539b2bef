#include "thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define KC_PAUSE() _mm_pause()
#else
#define KC_PAUSE() std::this_thread::yield()
#endif

namespace kc {

namespace {
constexpr int kSpinIterations = 4000;  // pauses before a worker sleeps: ~80 us on Zen 5, longer on Intel
constexpr uint64_t kBusy = 1;

uint64_t word(uint32_t tag, int next) { return static_cast<uint64_t>(tag) << 32 | static_cast<uint32_t>(next); }
}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : shares_(static_cast<size_t>(n_threads < 1 ? 1 : n_threads)), states_(static_cast<size_t>(n_threads < 1 ? 1 : n_threads)) {
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::claim(Share& s, uint32_t tag) {
  uint64_t w = s.word.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(w >> 32) != tag) return -1;  // another job's share
    const int next = static_cast<int>(static_cast<uint32_t>(w));
    // (a share being reset for the next job stores its word first: should this read the new end,
    // the compare-exchange below sees the new word and fails)
    if (next >= s.end.load(std::memory_order_acquire)) return -1;
    if (s.word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return next;
  }
}

void ThreadPool::run_tasks(int thread_id, uint32_t tag) {
  const int n = static_cast<int>(shares_.size());
  std::atomic<uint64_t>& state = states_[thread_id].v;
  for (int i = 0; i < n; ++i) {  // its own share first, then the others'
    Share& s = shares_[(thread_id + i) % n];
    for (;;) {
      // busy before the claim: whoever sees the share exhausted afterwards sees this too (the
      // claim's release), and waits for the task
      state.store(static_cast<uint64_t>(tag) << 1 | kBusy, std::memory_order_relaxed);
      const int task = claim(s, tag);
      if (task >= 0) (*fn_.load(std::memory_order_relaxed))(task, thread_id);
      state.store(static_cast<uint64_t>(tag) << 1, std::memory_order_release);
      if (task < 0) break;
    }
  }
}

void ThreadPool::parallel_for(int n_tasks, const std::function<void(int, int)>& fn, const int* share_begin) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  fn_.store(&fn, std::memory_order_relaxed);
  const uint32_t tag = static_cast<uint32_t>(generation_.load(std::memory_order_relaxed) + 1);
  const int n = static_cast<int>(shares_.size());
  const auto begin = [&](int t) { return share_begin ? share_begin[t] : static_cast<int>(static_cast<int64_t>(n_tasks) * t / n); };
  for (int t = 0; t < n; ++t) {
    shares_[t].word.store(word(tag, begin(t)), std::memory_order_relaxed);
    shares_[t].end.store(begin(t + 1), std::memory_order_release);
  }
  generation_.fetch_add(1);  // seq_cst: publishes the job before the sleeping_ check below
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  run_tasks(0, tag);
  // Every task is claimed; wait only for workers running one of this job's. A worker that has not
  // joined (asleep, or its CPU taken by the host) is not waited for: it finds the shares empty or
  // tagged with a later job, and does nothing of this one.
  const uint64_t busy = static_cast<uint64_t>(tag) << 1 | kBusy;
  for (size_t t = 1; t < states_.size(); ++t)
    while (states_[t].v.load(std::memory_order_acquire) == busy) KC_PAUSE();
}

void ThreadPool::worker_loop(int thread_id) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      if (++spins < kSpinIterations) {
        KC_PAUSE();
        continue;
      }
      std::unique_lock<std::mutex> lk(mu_);
      sleeping_.fetch_add(1);
      cv_.wait(lk, [&] { return generation_.load() != seen; });
      sleeping_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    run_tasks(thread_id, static_cast<uint32_t>(seen));
  }
}

}  // namespace kc
