#pragma once
// Pod status: computed from the runtime's view as upstream's
// generateAPIPodStatus and kept per pod UID by the status manager (which,
// with an API server, also writes it back).
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "kubelet/api/types.h"
#include "kubelet/kuberuntime/runtime_manager.h"

namespace kubelet::status {

/** Upstream's getPhase: init containers (plain and sidecars) and main containers. */
std::string GetPhase(const api::Pod& pod, const std::vector<api::ContainerStatus>& init_statuses,
                     const std::vector<api::ContainerStatus>& statuses, bool pod_is_terminal);
/** GetPhase for a pod without init containers. */
std::string GetPhase(const api::Pod& pod, const std::vector<api::ContainerStatus>& statuses, bool pod_is_terminal = false);

struct StatusInputs {
  std::string runtime_type = "containerd";  // containerID prefix
  std::string host_ip;
  std::function<std::optional<kuberuntime::WaitingReason>(const std::string& container)> waiting_reason;
  TimePoint now;
  // The pod is being deleted and its containers were stopped: its phase becomes Succeeded or Failed.
  bool pod_is_terminal = false;
  // Latest readiness and startup probe results by container ID (nullopt: none yet).
  std::function<std::optional<bool>(const std::string& container_id)> readiness;
  std::function<std::optional<bool>(const std::string& container_id)> startup;
};

api::PodStatus GenerateAPIPodStatus(const api::Pod& pod, const kuberuntime::PodStatus& rs,
                                    const std::optional<api::PodStatus>& old, const StatusInputs& in);

class StatusManager {
 public:
  std::optional<api::PodStatus> GetPodStatus(const std::string& uid) const;
  /**
   * Stores the status, keeping each condition's lastTransitionTime (and the
   * startTime) while it holds; `status` is updated to what was stored.
   * Returns true if it changed.
   */
  bool SetPodStatus(const std::string& uid, api::PodStatus& status);
  void RemoveOrphanedStatuses(const std::set<std::string>& keep);
  size_t Size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, api::PodStatus> statuses_;
};

}  // namespace kubelet::status
