#pragma once
// Exception barriers. Nothing thrown below a component (a library's
// exception, a bug) may cross a thread entry or a component boundary: it is
// logged with the job's name, counted, and the job goes on.
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include <absl/status/status.h>

namespace kubelet {

/**
 * Marks `st` as a transient condition the caller expects and retries (work of the same pod still in flight, say):
 * pod workers retry it with back-off and log it at V(2), not as an error.
 */
absl::Status RetryLater(absl::Status st);
bool IsRetryLater(const absl::Status& st);

/** How many exceptions the barriers have caught since start (all threads). */
int64_t RecoveredExceptions();

/** Runs `fn`; an escaping exception is logged as "Observed a panic" with `job` and returned as an Internal error. */
absl::Status Guarded(const std::string& job, const std::function<absl::Status()>& fn);
/** Runs `fn` for a thread or a periodic job; an escaping exception is logged and counted, never rethrown. */
void GuardedRun(const std::string& job, const std::function<void()>& fn);

/**
 * Cancellation of one pod's sync, as upstream's per-pod context: the pod worker cancels the token when a kill
 * arrives while a sync of that pod is in flight. Waits inside the sync (an image pull waiting its turn) give up,
 * and calls in flight that registered an OnCancel hook (the CRI PullImage) are cancelled at once.
 */
class CancelToken {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;
  /** Marks the token cancelled and runs the registered hooks (each once). */
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class OnCancel;
  int Register(std::function<void()> fn);  // runs fn at once (and returns -1) when already cancelled
  void Unregister(int id);

  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  int next_id_ = 0;
  std::map<int, std::function<void()>> hooks_;
};

/** Makes `token` the cancellation of the work running on this thread until the scope ends. */
class CancelScope {
 public:
  explicit CancelScope(CancelToken* token);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  /** True when the sync running on this thread was cancelled. */
  static bool Cancelled();
  /** The token of the work running on this thread, or null. */
  static CancelToken* Current();

 private:
  CancelToken* prev_;
};

/**
 * Runs `fn` (from the cancelling thread) if the current thread's work is cancelled while this object lives. The
 * destructor waits for a hook that is running, so `fn` may refer to locals of the caller.
 */
class OnCancel {
 public:
  explicit OnCancel(std::function<void()> fn);
  ~OnCancel();
  OnCancel(const OnCancel&) = delete;
  OnCancel& operator=(const OnCancel&) = delete;

 private:
  CancelToken* token_;
  int id_ = -1;
};

}  // namespace kubelet
