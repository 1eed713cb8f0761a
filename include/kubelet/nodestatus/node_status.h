#pragma once
// Node registration, node status and the node lease, as upstream's
// kubelet_node_status.go and nodelease: the Node is created (or taken over)
// with its labels, taints, capacity, addresses and nodeInfo; its status is
// computed every nodeStatusUpdateFrequency and patched when it changed or
// every nodeStatusReportFrequency; the Lease in kube-node-lease is renewed
// every nodeLeaseDurationSeconds/4.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/status.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/objects.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/reflector.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/network/cni.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/logging.h"

namespace kubelet::nodestatus {

/** Why the node is or is not ready (runtime and network state). */
struct Readiness {
  bool runtime_ready = false;
  bool network_ready = false;
  std::string message;  // upstream's KubeletNotReady message when not ready
};

struct NodeOptions {
  std::string node_name;
  std::string node_ip;
  std::string hostname;
  int kubelet_port = 10250;
  int max_pods = 110;
  std::map<std::string, std::string> node_labels;
  std::vector<api::Taint> register_with_taints;
  std::map<std::string, std::string> system_reserved;
  std::map<std::string, std::string> kube_reserved;
  std::map<std::string, std::string> eviction_hard;
  std::string root_dir = "/var/lib/kubelet";
  std::string provider_id;
  std::string pod_cidr;
  bool register_node = true;
  Duration update_frequency = std::chrono::seconds(10);
  Duration report_frequency = std::chrono::minutes(5);
  int lease_duration_seconds = 40;
};

struct NodeProviders {
  std::function<std::string()> runtime_version;  // "containerd://1.6.20"
  std::function<Readiness()> readiness;
  std::function<void(const std::string& reason, const std::string& message, const std::string& type)> node_event;
  /** Pressure conditions in force (the eviction manager's): "MemoryPressure", "DiskPressure", "PIDPressure". */
  std::function<std::vector<std::string>()> pressure;
  /** The volume manager's volumes in use; nullopt until its reconciler has synced (the last list is kept then). */
  std::function<std::optional<std::vector<std::string>>()> volumes_in_use;
  /** Device plugins' extended resources: capacity (all devices), allocatable (healthy), removed (reported as 0). */
  struct ExtendedResources {
    std::map<std::string, int64_t> capacity, allocatable;
    std::vector<std::string> removed;
  };
  std::function<ExtendedResources()> extended_resources;
};

/**
 * The node's readiness from the runtime's CRI Status (RuntimeReady,
 * NetworkReady) with upstream's messages; in kubelet network mode (cni set)
 * the network is ready when the kubelet's own CNI configuration is
 * ("network plugin not ready: cni config uninitialized" otherwise).
 */
Readiness ReadinessFrom(const absl::StatusOr<cri::rt::StatusResponse>& status, const network::CNIRunner* cni);

/** Allocatable milli-CPU and memory bytes: capacity minus reservations and the memory eviction threshold. */
std::pair<int64_t, int64_t> AllocatableCpuMemory(const NodeOptions& o);

/** The Node object this kubelet registers (upstream's initialNode), without status. */
api::Node InitialNode(const NodeOptions& o);
/** The node's status now: capacity, allocatable, conditions (keeping transition times of `old`), addresses, nodeInfo. */
api::NodeStatus ComputeNodeStatus(const NodeOptions& o, const NodeProviders& p, const api::NodeStatus& old, TimePoint now);

class NodeStatusManager {
 public:
  NodeStatusManager(client::ApiClient* api, const Clock* clock, NodeOptions o, NodeProviders p);
  ~NodeStatusManager();
  void Start();
  void Stop();
  bool Registered() const { return registered_.load(); }
  /** One registration attempt (create or take over), then one status sync; for tests. */
  absl::Status RegisterOnce();
  absl::Status SyncStatusOnce(bool force);
  absl::Status RenewLeaseOnce();
  /** The node's UID once registered (owner of mirror pods). */
  std::string NodeUID() const;
  /** The Node object's labels as last seen (registration, then a watch of the Node); unset before the first. */
  std::optional<std::map<std::string, std::string>> NodeLabels() const;
  // Reads the Node from the API server now (not the watch) and keeps its labels: admission asks for it when a pod
  // fails NodeAffinity, since the watch may not have delivered a label the scheduler already saw (upstream
  // kubernetes#134445). Unset when the Node cannot be read.
  std::optional<std::map<std::string, std::string>> RefreshNodeLabels();
  /**
   * The unique names in the watched Node's status.volumesAttached (the attach/detach controller writes them):
   * upstream's VerifyControllerAttachedVolume reads them before it waits for an attachment. Unset before the Node
   * was read.
   */
  std::optional<std::vector<std::string>> VolumesAttached() const;

 private:
  void StatusLoop();
  void LeaseLoop();

  client::ApiClient* api_;
  const Clock* clock_;
  NodeOptions o_;
  NodeProviders p_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<bool> registered_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  api::NodeStatus last_status_;
  std::string node_uid_;
  std::optional<std::map<std::string, std::string>> labels_;
  std::optional<std::vector<std::string>> volumes_attached_;
  std::optional<TimePoint> last_report_;
  std::thread status_thread_;
  std::thread lease_thread_;
  std::unique_ptr<client::Reflector> node_reflector_;
};

}  // namespace kubelet::nodestatus
