#pragma once
// The eviction manager, as upstream's: every monitoring period it observes the
// node's signals (memory.available, nodefs.*, imagefs.*, pid.available) from
// the stats provider, compares them with evictionHard / evictionSoft (with
// their grace periods and minimum reclaim), reports MemoryPressure /
// DiskPressure / PIDPressure (kept for evictionPressureTransitionPeriod after
// the last crossing), reclaims node-level resources first (dead containers,
// unused images) for disk signals, then evicts at most one pod per round,
// ranked as upstream ranks them, never a critical (static, mirror or
// system-critical) pod. Under pressure it refuses pods as upstream's admit
// handler does.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/api/types.h"
#include "kubelet/stats/provider.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/logging.h"

namespace kubelet::eviction {

inline constexpr char kReason[] = "Evicted";

struct Threshold {
  std::string signal;                 // memory.available, nodefs.available, ...
  std::optional<int64_t> quantity;    // absolute (bytes, inodes, pids)
  double percentage = 0;              // of capacity, when no quantity
  Duration grace_period{};            // soft thresholds only
  std::optional<int64_t> min_reclaim_quantity;
  double min_reclaim_percentage = 0;
  bool hard = true;
  std::string text;                   // as configured, e.g. "100Mi" or "10%"
};

/** evictionHard/evictionSoft/evictionSoftGracePeriod/evictionMinimumReclaim to thresholds, validated as upstream. */
absl::StatusOr<std::vector<Threshold>> ParseThresholds(const std::map<std::string, std::string>& hard,
                                                       const std::map<std::string, std::string>& soft,
                                                       const std::map<std::string, std::string>& soft_grace,
                                                       const std::map<std::string, std::string>& min_reclaim);

struct Observation {
  int64_t available = 0;
  int64_t capacity = 0;
  TimePoint time{};
};
using Observations = std::map<std::string, Observation>;

/**
 * The signals from one stats collection. With `allocatable_memory` > 0 (node allocatable enforced on pods) also
 * allocatableMemory.available: that minus the working set of the pods' cgroup.
 */
Observations Observe(const stats::Summary& s, int64_t allocatable_memory = 0);
/**
 * Upstream adds allocatableMemory.available, at memory.available's hard value, when node allocatable is
 * enforced on pods; this does the same to `thresholds`.
 */
void AddAllocatableThresholds(std::vector<Threshold>* thresholds);
/** The threshold's value against `capacity` (percentages resolved). */
int64_t ThresholdValue(const Threshold& t, int64_t capacity);
/** The node condition a signal drives: MemoryPressure, DiskPressure or PIDPressure. */
std::string ConditionFor(const std::string& signal);
/** Static, mirror and system-critical (priority >= 2000000000) pods are never evicted. */
bool IsCriticalPod(const api::Pod& pod);
/** Pods in the order upstream evicts them for `signal`, from the stats of `s`. */
std::vector<const api::Pod*> RankForEviction(const std::string& signal, const std::vector<const api::Pod*>& pods,
                                             const stats::Summary& s);
/** Upstream's eviction message: "The node was low on resource: memory. Threshold quantity: ..., available: .... ..." */
std::string EvictionMessage(const std::string& signal, const api::Pod& pod, const stats::Summary& s, const Threshold& t,
                            const Observation& o);

struct EvictionOptions {
  std::vector<Threshold> thresholds;
  Duration pressure_transition_period = std::chrono::minutes(5);
  int64_t max_pod_grace_period_seconds = 0;  // evictionMaxPodGracePeriod, for soft evictions
  Duration monitoring_period = std::chrono::seconds(10);
  Duration pod_cleanup_timeout = std::chrono::seconds(30);
  int64_t allocatable_memory = 0;  // for allocatableMemory.available (capacity - reserved - memory.available hard)
  bool local_storage_capacity_isolation = true;  // localStorageCapacityIsolation: ephemeral-storage limits enforced
};

/**
 * Upstream's local storage eviction: the first pod (not critical) whose emptyDir exceeds its sizeLimit, whose
 * ephemeral usage exceeds the sum of its containers' ephemeral-storage limits, or with a container over its own
 * limit; with the upstream message. nullopt when none.
 */
std::optional<std::pair<const api::Pod*, std::string>> LocalStorageViolation(const std::vector<const api::Pod*>& pods,
                                                                             const stats::Summary& s);

struct EvictionDeps {
  /** A fresh stats collection (StatsProvider::Refresh). */
  std::function<absl::StatusOr<std::shared_ptr<const stats::Summary>>()> summary;
  const Clock* clock = nullptr;
  /** The pods the kubelet runs (admitted, not terminal). */
  std::function<std::vector<api::Pod>()> active_pods;
  /** Stops the pod with `grace` seconds and marks it Failed / Evicted with `message`; false if it could not. */
  std::function<bool(const api::Pod& pod, int64_t grace, const std::string& message)> evict_pod;
  /** Whether the evicted pod is fully stopped (its containers gone). */
  std::function<bool(const std::string& uid)> pod_cleaned_up;
  /** Node-level reclaim for disk signals: dead containers, then unused images. */
  std::function<absl::Status()> delete_unused_containers;
  std::function<absl::Status()> delete_unused_images;
  /** Eviction counter (kubelet_evictions{eviction_signal}). */
  std::function<void(const std::string& signal)> on_eviction;
};

struct AdmitResult {
  bool admit = true;
  std::string reason;
  std::string message;
};

class EvictionManager {
 public:
  EvictionManager(EvictionDeps deps, EvictionOptions o);
  ~EvictionManager();
  void Start();
  void Stop();
  /** One monitoring round; the evicted pod's UID if one was evicted. */
  std::optional<std::string> Synchronize();
  /** The pressure conditions in force now (e.g. {"MemoryPressure"}). */
  std::vector<std::string> NodeConditions() const;
  bool Has(const std::string& condition) const;
  /** Upstream's eviction admit handler. */
  AdmitResult Admit(const api::Pod& pod) const;

 private:
  void Loop();
  EvictionDeps d_;
  EvictionOptions o_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::map<std::string, TimePoint> first_observed_;       // threshold key -> first crossing
  std::map<std::string, TimePoint> condition_last_seen_;  // condition -> last time a threshold drove it
  std::vector<std::string> conditions_;
  std::set<std::string> unresolved_;  // thresholds met last round (min reclaim keeps them until cleared by that much)
  std::mutex loop_mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kubelet::eviction
