#pragma once
// Volume usage of the pods' volumes, as upstream's fsResourceAnalyzer and its per-pod volumeStatCalculator:
// every volumeStatsAggPeriod each pod's volumes are measured (for CSI, NodeGetVolumeStats on the driver) and
// the answers cached, so /stats/summary and the kubelet_volume_stats_* series of /metrics read the cache
// and never wait on a driver. Each pod's measuring runs on a thread of its own (OperationExecutor), so a
// driver that hangs until its deadline delays only that pod's numbers. The cache holds only the pods the
// last round listed.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/stats/provider.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/operation_executor.h"

namespace kubelet::stats {

/** A volume to measure: which pod, its name in the pod, the claim it is (if any), and an opaque key for measure. */
struct VolumeRef {
  std::string pod_uid, pod_namespace, pod_name;
  std::string name;
  std::string pvc_name;
  std::string key;
};

struct FsResourceAnalyzerOptions {
  Duration period = std::chrono::minutes(1);  // volumeStatsAggPeriod; zero or less: nothing is measured
  std::function<std::vector<VolumeRef>()> volumes;
  /** The volume's usage now; NotFound when its plugin does not report usage (it is left out). */
  std::function<absl::StatusOr<VolumeStats>(const VolumeRef&)> measure;
  /** A volume measured abnormal (CSI VOLUME_CONDITION): upstream's VolumeConditionAbnormal warning on the pod. */
  std::function<void(const VolumeRef&, const std::string& message)> abnormal;
  const Clock* clock = nullptr;  // the sample times; the real clock when unset
};

class FsResourceAnalyzer {
 public:
  explicit FsResourceAnalyzer(FsResourceAnalyzerOptions o);
  ~FsResourceAnalyzer();
  void Start();
  void Stop();
  /** Measures every listed pod now (each on its own thread) and waits for them: the tests' and Start's first round. */
  void MeasureNow();
  /** The pod's volumes as last measured. */
  std::vector<VolumeStats> PodVolumeStats(const std::string& pod_uid) const;
  /** Pods with cached numbers (for the bounded-maps tests). */
  size_t Size() const;

 private:
  void Round(bool wait);
  absl::Status MeasurePod(const std::string& uid, const std::vector<VolumeRef>& refs);

  FsResourceAnalyzerOptions o_;
  OperationExecutor ops_{"volume stats", std::chrono::milliseconds(0), std::chrono::milliseconds(0)};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, std::vector<VolumeStats>> cache_;
  std::thread thread_;
};

}  // namespace kubelet::stats
