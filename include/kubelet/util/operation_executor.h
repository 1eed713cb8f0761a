#pragma once
// Keyed operations, as upstream's nestedpendingoperations: at most one operation per key runs at a
// time, each on a thread of its own (so one slow key never holds back another), and a key whose
// operation failed is not started again before its exponential back-off has passed (500 ms doubling
// to 2m2s, upstream's exponentialbackoff). Finished threads are joined by the next Run or by Stop;
// the maps hold only keys with an operation running or a back-off pending, and entries whose
// back-off ended long ago are dropped.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/status.h>

namespace kubelet {

class OperationExecutor {
 public:
  using Steady = std::chrono::steady_clock;
  explicit OperationExecutor(std::string name, std::chrono::milliseconds initial_backoff = std::chrono::milliseconds(500),
                             std::chrono::milliseconds max_backoff = std::chrono::milliseconds(122000));
  ~OperationExecutor();
  OperationExecutor(const OperationExecutor&) = delete;
  OperationExecutor& operator=(const OperationExecutor&) = delete;

  /**
   * Starts `op` for `key` on its own thread, unless an operation of that key is running (AlreadyExists) or in its
   * back-off (Unavailable, naming when it may run again), or the executor is stopped (Cancelled). A failed
   * operation (an error status or an exception, which is caught and logged) starts or doubles the key's back-off;
   * a successful one clears it.
   */
  absl::Status Run(const std::string& key, std::function<absl::Status()> op);
  bool IsRunning(const std::string& key) const;
  /** Waits for the running operations to end; Run refuses new ones from then on. */
  void Stop();
  /** Keys with an operation running or a back-off remembered (for the bounded-maps tests). */
  size_t Size() const;
  /** Forgets the key's back-off (its object went away, or the caller wants an immediate retry). */
  void ResetBackoff(const std::string& key);

 private:
  struct Entry {
    bool running = false;
    std::thread thread;
    std::chrono::milliseconds backoff{0};
    Steady::time_point retry_at{};
  };
  void JoinFinishedLocked(std::unique_lock<std::mutex>& l);
  void PruneLocked(Steady::time_point now);

  const std::string name_;
  const std::chrono::milliseconds initial_, max_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::map<std::string, Entry> ops_;
  std::vector<std::thread> finished_;
};

}  // namespace kubelet
