#pragma once
// Pod workers: every pod has at most one sync in flight; newer updates for a
// busy pod are coalesced and run when it finishes. A pod moves
// syncing -> terminating -> terminated -> done, as upstream's podWorkers.
// Each pod with work gets a runner thread of its own (upstream's goroutine per
// pod), which ends when the pod has nothing left to do: one pod's grace
// period, hook, pull or slow runtime call never holds back another pod, and
// idle pods cost no thread. One timer thread re-queues finished work after the
// resync or back-off delay. A kill that arrives while a sync of the same pod
// is in flight cancels that sync's waits (CancelScope).
#include <chrono>
#include <condition_variable>
#include <atomic>
#include <memory>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/api/types.h"
#include "kubelet/kuberuntime/types.h"
#include "kubelet/util/guard.h"

namespace kubelet {

enum class UpdateType { kCreate, kUpdate, kSync, kKill };

class PodWorkers {
 public:
  struct Callbacks {
    /** Syncs a running pod; returns true when the pod reached a terminal phase. */
    std::function<absl::StatusOr<bool>(const api::Pod& pod, UpdateType type)> sync_pod;
    /** Stops everything of the pod (pod may be absent for a pod known only to the runtime). */
    std::function<absl::Status(const std::string& uid, const api::Pod* pod, std::optional<int64_t> grace)> sync_terminating;
    /** Cleans up after a stopped pod. */
    std::function<absl::Status(const std::string& uid, const api::Pod* pod)> sync_terminated;
  };

  PodWorkers(Callbacks cb, Duration resync, Duration backoff);
  ~PodWorkers();
  void Stop();

  /** Delivers an update; a kKill moves the pod to terminating. `pod` may be empty for runtime-only pods. */
  void UpdatePod(UpdateType type, const std::string& uid, std::optional<api::Pod> pod,
                 std::optional<int64_t> grace = std::nullopt);
  bool IsKnown(const std::string& uid) const;
  /** True once the pod finished terminating and cleaning up. */
  bool IsDone(const std::string& uid) const;
  /** True while another UID with this full name is still terminating: a static pod waits for its previous instance. */
  bool OtherInstanceTerminating(const std::string& full_name, const std::string& uid) const;
  /** Drops finished workers not in `keep`. */
  void ForgetDone(const std::function<bool(const std::string&)>& keep);
  size_t Size() const;
  /** Runner threads alive now (pods with work in flight). */
  size_t ActiveRunners() const;

 private:
  enum class Phase { kSyncing, kTerminating, kTerminated, kDone };
  struct State {
    std::optional<api::Pod> pod;
    Phase phase = Phase::kSyncing;
    UpdateType pending_type = UpdateType::kSync;
    bool pending = false;
    bool in_flight = false;
    bool running = false;  // a runner thread owns this pod
    std::shared_ptr<CancelToken> cancel;  // the in-flight sync's cancellation
    std::optional<int64_t> grace;
    // Re-added (same UID) while it was being torn down: start again once done.
    bool restart_when_done = false;
    // The one resync that counts; older entries in delayed_ are stale and skipped.
    std::chrono::steady_clock::time_point due{};
  };
  void Enqueue(const std::string& uid, State& s);
  void Run(std::string uid);
  void Timer();

  Callbacks cb_;
  Duration resync_;
  Duration backoff_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::condition_variable runners_cv_;
  size_t runners_ = 0;
  std::map<std::string, State> pods_;
  std::multimap<std::chrono::steady_clock::time_point, std::string> delayed_;
  std::thread timer_;
};

}  // namespace kubelet
