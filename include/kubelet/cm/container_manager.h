#pragma once
// The container manager: the node's cgroup tree as upstream lays it out.
//
//   <cgroupRoot>/kubepods               node allocatable (capacity - systemReserved - kubeReserved)
//   <cgroupRoot>/kubepods/burstable     cpu shares = the burstable pods' cpu requests
//   <cgroupRoot>/kubepods/besteffort    cpu shares 2
//   .../pod<UID>                        the pod's requests and limits, podPidsLimit
//
// Guaranteed pods sit directly under kubepods. The pod cgroup is the CRI
// sandbox's cgroup_parent; the runtime makes the container cgroups under it.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kubelet/api/types.h"
#include "kubelet/cm/cgroup.h"
#include "kubelet/util/logging.h"

namespace kubelet::cm {

/** Milli-CPU and bytes; pids 0 = unknown. */
struct NodeResources {
  int64_t milli_cpu = 0;
  int64_t memory = 0;
  int64_t pids = 0;
};

/** A pod's totals as upstream's resource helpers compute them (init containers and sidecars included). */
struct PodResourceTotals {
  int64_t cpu_request_milli = 0;
  int64_t memory_request = 0;
  int64_t cpu_limit_milli = 0;
  int64_t memory_limit = 0;
  bool all_cpu_limits = true;     // every container declares a cpu limit
  bool all_memory_limits = true;  // every container declares a memory limit
};
PodResourceTotals ComputePodResources(const api::Pod& pod);

/** The pod cgroup's limits by QoS class, as upstream's ResourceConfigForPod. */
ResourceConfig ResourceConfigForPod(const api::Pod& pod, bool enforce_cpu_limits, int64_t cpu_period_us);

struct ContainerManagerOptions {
  std::string cgroup_root = "/";
  bool cgroups_per_qos = true;
  std::vector<std::string> enforce_node_allocatable = {"pods"};
  std::string system_reserved_cgroup;
  std::string kube_reserved_cgroup;
  std::map<std::string, std::string> system_reserved;
  std::map<std::string, std::string> kube_reserved;
  bool cpu_cfs_quota = true;
  std::chrono::microseconds cpu_cfs_quota_period{100000};
  int64_t pod_pids_limit = -1;
  NodeResources capacity;
};

class ContainerManager {
 public:
  ContainerManager(std::unique_ptr<CgroupManager> cgroups, ContainerManagerOptions o);

  /**
   * Checks the cgroup driver against the runtime's (when the runtime reports it) and the
   * cgroup root, then creates kubepods with node allocatable enforced and the QoS cgroups.
   */
  absl::Status Start(const std::optional<std::string>& runtime_cgroup_driver);

  /** capacity - systemReserved - kubeReserved (what kubepods is limited to under enforcement). */
  NodeResources AllocatableForCgroups() const;

  CgroupName Kubepods() const;
  CgroupName PodCgroup(const api::Pod& pod) const;
  /** The pod cgroup in the driver's form, for CRI; empty without cgroupsPerQOS. */
  std::string PodCgroupParent(const api::Pod& pod) const;
  /** Creates the pod cgroup with its limits when missing. */
  absl::Status EnsurePodCgroup(const api::Pod& pod);
  /** Removes pod<uid> wherever it is (killing leftovers). */
  absl::Status DestroyPodCgroup(const std::string& uid);
  /** Where pod<uid> is in the QoS tree, if anywhere. */
  std::optional<CgroupName> FindPodCgroup(const std::string& uid) const;
  /** UIDs of every pod cgroup under the QoS tree. */
  std::set<std::string> PodCgroupUIDs() const;
  /** Burstable's cpu shares from the active burstable pods' requests; besteffort's kept at 2. */
  absl::Status UpdateQOSCgroups(const std::vector<const api::Pod*>& active);

  CgroupManager* cgroups() { return cgroups_.get(); }
  bool enabled() const { return o_.cgroups_per_qos; }

 private:
  CgroupName Root() const;
  absl::Status EnforceReserved(const std::string& key, const std::string& cgroup,
                               const std::map<std::string, std::string>& reserved);
  std::unique_ptr<CgroupManager> cgroups_;
  ContainerManagerOptions o_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex mu_;
};

}  // namespace kubelet::cm
