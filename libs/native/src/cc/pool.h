// A small fork-join pool for elementwise and reduction kernels. The calling (JS) thread is worker
// 0 and always takes part, so a pool of size 1 has no threads at all. Workers spin briefly after
// a job (kernels arrive back to back from JS, microseconds apart), then yield, then sleep on a
// futex: on 2 cores shared with OpenBLAS's own threads, a worker that spins for long steals the
// core a GEMM needs (stack.md: OMP_WAIT_POLICY).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace patchlm {

class Pool {
 public:
  explicit Pool(int threads);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void resize(int threads);

  // Call fn(begin, end) on disjoint ranges covering [0, n); ranges are multiples of `grain`
  // (except the last). Runs inline when n is small or the pool has one thread.
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Call fn(part, parts) once per part, on `parts` = size() threads (or 1 when n < minWork).
  void parallelParts(int64_t work, int64_t minWork, const std::function<void(int, int)>& fn);

 private:
  void start(int threads);
  void stop();
  void workerLoop(int index);
  void run(int parts, const std::function<void(int, int)>& fn);

  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  int parts_ = 1;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> quit_{false};
};

Pool& pool();

}  // namespace patchlm
