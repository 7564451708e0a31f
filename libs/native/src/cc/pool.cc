#include "pool.h"

#include <immintrin.h>
#include <sched.h>

#include <algorithm>

namespace patchlm {

namespace {
// About 20-40 µs of pause instructions, then yields for about as long, then sleep.
constexpr int kSpinPauses = 4000;
constexpr int kSpinYields = 200;
}  // namespace

Pool::Pool(int threads) { start(threads); }

Pool::~Pool() { stop(); }

void Pool::start(int threads) {
  quit_.store(false);
  for (int i = 1; i < std::max(threads, 1); i++) workers_.emplace_back([this, i] { workerLoop(i); });
}

void Pool::stop() {
  quit_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Pool::resize(int threads) {
  if (threads == size()) return;
  stop();
  start(threads);
}

void Pool::workerLoop(int index) {
  uint32_t seen = generation_.load();
  for (;;) {
    uint32_t now = generation_.load(std::memory_order_acquire);
    for (int i = 0; now == seen && i < kSpinPauses; i++) {
      _mm_pause();
      now = generation_.load(std::memory_order_acquire);
    }
    for (int i = 0; now == seen && i < kSpinYields; i++) {
      sched_yield();
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = now;
    if (quit_.load()) return;
    if (index < parts_) (*job_)(index, parts_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void Pool::run(int parts, const std::function<void(int, int)>& fn) {
  if (parts <= 1 || workers_.empty()) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  parts_ = parts;
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  fn(0, parts);
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
  job_ = nullptr;
}

void Pool::parallelParts(int64_t work, int64_t minWork, const std::function<void(int, int)>& fn) {
  run(work < minWork ? 1 : size(), fn);
}

void Pool::parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  const int parts = static_cast<int>(std::min<int64_t>(chunks, size()));
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
