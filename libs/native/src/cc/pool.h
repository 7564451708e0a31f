// A small fork-join pool for elementwise and reduction kernels. The calling (JS) thread always
// takes part, so a pool of size 1 has no threads at all.
//
// Made for 2 cores shared with OpenBLAS's threads and, often, other processes (stack.md:
// OMP_WAIT_POLICY): a job is split into one part per thread, and a part that no worker has
// claimed by the time the caller finishes its own is run by the caller, so a descheduled worker
// never stalls a kernel. Workers spin briefly after a job (kernels arrive back to back from JS,
// microseconds apart), then yield, then sleep on a futex.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace patchlm {

class Pool {
 public:
  static constexpr int kMaxThreads = 64;

  explicit Pool(int threads);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void resize(int threads);

  // Call fn(begin, end) on disjoint ranges covering [0, n); ranges are multiples of `grain`
  // (except the last). Runs inline when n <= grain or the pool has one thread.
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct alignas(64) Part {
    // (generation << 1) | claimed: a part can only be claimed for the job it was posted with.
    std::atomic<uint64_t> state{0};
  };

  void start(int threads);
  void stop();
  // Runs posted parts until stop(); `seen` is the generation at start().
  void workerLoop(int index, uint32_t seen);
  bool claim(int index, uint32_t generation);
  void run(int parts, const std::function<void(int, int)>& fn);

  std::vector<std::thread> workers_;
  Part parts_[kMaxThreads];
  const std::function<void(int, int)>* job_ = nullptr;
  int jobParts_ = 1;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> completed_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
};

Pool& pool();

}  // namespace patchlm
