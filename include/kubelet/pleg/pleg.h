#pragma once
// Generic PLEG: relists the runtime every period and turns differences in
// sandbox and container states into per-pod lifecycle events.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/util/logging.h"

namespace kubelet::metrics {
class KubeletMetrics;
}

namespace kubelet::pleg {

enum class EventType { kContainerStarted, kContainerDied, kContainerRemoved, kContainerChanged };
const char* EventTypeName(EventType t);

struct PodLifecycleEvent {
  std::string uid;
  EventType type;
  std::string data;  // container ID
};

class PLEG {
 public:
  using Sink = std::function<void(std::vector<PodLifecycleEvent>)>;
  PLEG(kuberuntime::RuntimeManager* runtime, metrics::KubeletMetrics* metrics, Duration period, Sink sink);
  ~PLEG();
  void Start();
  void Stop();
  /** One relist; returns false when the runtime could not be listed. */
  bool Relist();
  /** Unhealthy when no relist completed within 3 minutes, as upstream. */
  bool Healthy(std::string* why) const;
  /** The pods seen by the last successful relist. */
  std::vector<kuberuntime::RuntimePod> LastPods() const;
  bool HasRelisted() const { return relisted_.load(); }
  /** Waits for the first successful relist, at most `timeout`; true when it happened. */
  bool WaitForFirstRelist(Duration timeout) const;

 private:
  kuberuntime::RuntimeManager* runtime_;
  metrics::KubeletMetrics* metrics_;
  Duration period_;
  Sink sink_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::map<std::string, std::pair<std::string, kuberuntime::ContainerState>> last_;  // id -> (uid, state)
  std::vector<kuberuntime::RuntimePod> pods_;
  std::chrono::steady_clock::time_point last_relist_;
  std::chrono::steady_clock::time_point last_start_;
  std::atomic<bool> relisted_{false};
  mutable std::condition_variable relisted_cv_;  // with mu_
};

}  // namespace kubelet::pleg
