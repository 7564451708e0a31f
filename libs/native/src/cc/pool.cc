#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <sched.h>

#include <algorithm>

namespace patchlm {

namespace {
// A spin-wait hint to the core (PAUSE on x86, YIELD on aarch64): the sibling hyperthread gets the
// pipeline and the loop draws less power.
inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}
}  // namespace

namespace {
// About 20-40 µs of pause instructions, then yields for about as long, then sleep.
constexpr int kSpinPauses = 4000;
constexpr int kSpinYields = 200;
}  // namespace

Pool::Pool(int threads) { start(threads); }

Pool::~Pool() { stop(); }

void Pool::start(int threads) {
  quit_.store(false);
  threads = std::clamp(threads, 1, kMaxThreads);
  // The generation the workers start from is read here, not by each new thread: a stop() (a
  // resize) right after this start would otherwise bump it before a slow thread's first read, and
  // that thread would wait for a change that never comes while stop() waits to join it.
  const uint32_t base = generation_.load();
  for (int i = 1; i < threads; i++) workers_.emplace_back([this, i, base] { workerLoop(i, base); });
}

void Pool::stop() {
  quit_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Pool::resize(int threads) {
  if (std::clamp(threads, 1, kMaxThreads) == size()) return;
  stop();
  start(threads);
}

bool Pool::claim(int index, uint32_t generation) {
  uint64_t posted = static_cast<uint64_t>(generation) << 1;
  return parts_[index].state.compare_exchange_strong(posted, posted | 1, std::memory_order_acq_rel);
}

void Pool::workerLoop(int index, uint32_t seen) {
  for (;;) {
    uint32_t now = generation_.load(std::memory_order_acquire);
    for (int i = 0; now == seen && i < kSpinPauses; i++) {
      cpuRelax();
      now = generation_.load(std::memory_order_acquire);
    }
    for (int i = 0; now == seen && i < kSpinYields; i++) {
      sched_yield();
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      sleepers_.fetch_add(1);
      generation_.wait(seen);
      sleepers_.fetch_sub(1);
      continue;
    }
    seen = now;
    if (quit_.load()) return;
    // A successful claim pins the job: the caller waits for claimed parts before posting another.
    if (claim(index, now)) {
      (*job_)(index, jobParts_);
      completed_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

void Pool::run(int parts, const std::function<void(int, int)>& fn) {
  parts = std::min(parts, size());
  if (parts <= 1) {
    fn(0, 1);
    return;
  }
  const uint32_t generation = generation_.load() + 1;
  job_ = &fn;
  jobParts_ = parts;
  completed_.store(0, std::memory_order_relaxed);
  for (int i = 1; i < parts; i++) parts_[i].state.store(static_cast<uint64_t>(generation) << 1, std::memory_order_relaxed);
  generation_.store(generation);
  if (sleepers_.load() > 0) generation_.notify_all();
  fn(0, parts);
  // Parts no worker has picked up yet run here.
  for (int i = 1; i < parts; i++) {
    if (claim(i, generation)) {
      fn(i, parts);
      completed_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
  for (int spins = 0; completed_.load(std::memory_order_acquire) < parts - 1; spins++) {
    if (spins < kSpinPauses) cpuRelax();
    else sched_yield();
  }
  job_ = nullptr;
}

void Pool::parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  const int parts = static_cast<int>(std::min<int64_t>(chunks, size()));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  run(parts, [&](int part, int count) {
    const int64_t first = chunks * part / count;
    const int64_t last = chunks * (part + 1) / count;
    const int64_t begin = first * grain;
    const int64_t end = std::min(n, last * grain);
    if (begin < end) fn(begin, end);
  });
}

Pool& pool() {
  static Pool instance(1);
  return instance;
}

}  // namespace patchlm
