#pragma once
// Exception barriers. Nothing thrown below a component (a library's
// exception, a bug) may cross a thread entry or a component boundary: it is
// logged with the job's name, counted, and the job goes on.
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>

#include <absl/status/status.h>

namespace kubelet {

/** How many exceptions the barriers have caught since start (all threads). */
int64_t RecoveredExceptions();

/** Runs `fn`; an escaping exception is logged as "Observed a panic" with `job` and returned as an Internal error. */
absl::Status Guarded(const std::string& job, const std::function<absl::Status()>& fn);
/** Runs `fn` for a thread or a periodic job; an escaping exception is logged and counted, never rethrown. */
void GuardedRun(const std::string& job, const std::function<void()>& fn);

/**
 * Cancellation of one pod's sync, as upstream's per-pod context: the pod worker sets it when a kill arrives while a
 * sync of that pod is in flight, and waits inside the sync (an image pull waiting its turn) give up.
 */
class CancelScope {
 public:
  explicit CancelScope(const std::atomic<bool>* flag);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  /** True when the sync running on this thread was cancelled. */
  static bool Cancelled();

 private:
  const std::atomic<bool>* prev_;
};

}  // namespace kubelet
