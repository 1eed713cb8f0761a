#pragma once
// The CPU manager, as upstream's: policy "none" (the default: every container
// shares all CPUs) or "static": a container of a Guaranteed pod with an
// integer CPU request gets that many CPUs of its own, taken from the shared
// pool (never from reservedSystemCPUs, or the CPUs set aside for
// systemReserved + kubeReserved cpu); every other container runs on the shared
// pool, which shrinks and grows as exclusive CPUs are taken and given back.
// Cpusets reach the runtime at container creation and through CRI
// UpdateContainerResources every cpuManagerReconcilePeriod. The state is
// checkpointed in <root-dir>/cpu_manager_state and restored after a restart.
//
// As a topology manager hint provider it offers the NUMA node sets whose free
// CPUs could serve a container (or the pod), and takes a container's CPUs from
// the NUMA nodes of its affinity first.
//
// Differences from upstream: init containers run on the shared pool (upstream
// gives them exclusive CPUs that the app containers then reuse); CPUs are
// taken in (socket, core, id) order rather than by the full topology search.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/api/types.h"
#include "kubelet/cm/topologymanager.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/logging.h"

namespace kubelet::cm {

using CPUSet = std::set<int>;
/** Linux cpuset list syntax: "0-3,5". */
absl::StatusOr<CPUSet> ParseCPUSet(const std::string& s);
std::string FormatCPUSet(const CPUSet& s);

struct CPUInfo {
  int id = 0;
  int core = 0;
  int socket = 0;
  int numa = 0;  // the NUMA node (sysfs cpu<N>/node<M>)
};

/** The machine's CPUs from sysfs (online ones, with core, package and NUMA node ids). */
std::vector<CPUInfo> DiscoverCPUs(const std::string& sysfs = "/sys/devices/system/cpu");

/** CPUs a container of this pod gets for itself under the static policy: 0 unless Guaranteed with an integer request. */
int GuaranteedCPUs(const api::Pod& pod, const api::Container& c);

struct CPUManagerOptions {
  std::string policy = "none";      // cpuManagerPolicy
  std::string reserved_system_cpus;  // reservedSystemCPUs
  int64_t reserved_milli_cpu = 0;    // systemReserved.cpu + kubeReserved.cpu
  std::string state_file;            // <root-dir>/cpu_manager_state
  Duration reconcile_period = std::chrono::seconds(10);
  std::vector<int> numa_nodes;  // the machine's NUMA nodes for topology hints (empty: those of the CPUs)
};

struct CPUManagerDeps {
  cri::RuntimeService* runtime = nullptr;
  std::function<std::vector<api::Pod>()> active_pods;
  std::function<bool()> sources_ready;  // stale assignments are released only once every source has spoken
  const AffinityStore* affinity = nullptr;  // the topology manager: where a container's CPUs come from first
};

class CPUManager : public HintProvider {
 public:
  /** Validates the policy and the reservation, restores the checkpoint (or starts afresh). */
  static absl::StatusOr<std::unique_ptr<CPUManager>> New(std::vector<CPUInfo> cpus, CPUManagerOptions o, CPUManagerDeps d);
  ~CPUManager() override;
  void Start();
  void Stop();
  const std::string& policy() const { return o_.policy; }

  /** Admission: exclusive CPUs for the pod's containers that get them (an error as upstream's when too few); all or nothing. */
  absl::Status Allocate(const api::Pod& pod);
  /** The HintProvider's: one container's CPUs, from its topology affinity's NUMA nodes first. */
  absl::Status Allocate(const api::Pod& pod, const api::Container& c) override;
  TopologyHints GetTopologyHints(const api::Pod& pod, const api::Container& c) override;
  TopologyHints GetPodTopologyHints(const api::Pod& pod) override;
  /** Gives a pod's CPUs back to the shared pool (a pod refused after its CPUs were taken). */
  void RemovePod(const std::string& uid);
  /** The cpuset a container is created with: its own CPUs, else the shared pool; "" under "none". */
  std::string ContainerCPUSet(const std::string& pod_uid, const std::string& container) const;
  /** One reconcile round: releases CPUs of pods no longer active, pushes changed cpusets to running containers. */
  absl::Status ReconcileOnce();

  CPUSet DefaultSet() const;
  CPUSet Reserved() const { return reserved_; }
  std::map<std::string, std::map<std::string, CPUSet>> Assignments() const;

 private:
  CPUManager(std::vector<CPUInfo> cpus, CPUManagerOptions o, CPUManagerDeps d);
  absl::Status Restore();
  absl::Status Checkpoint() const;  // with mu_ held
  std::vector<int> AssignableLocked() const;  // free CPUs in (socket, core, id) order
  std::vector<TopologyHint> GenerateHintsLocked(const std::vector<int>& available, int request) const;
  absl::Status AllocateLocked(const api::Pod& pod, const api::Container& c, int n);
  void Loop();
  std::vector<CPUInfo> cpus_;
  CPUManagerOptions o_;
  CPUManagerDeps d_;
  std::shared_ptr<spdlog::logger> log_;
  CPUSet all_;
  CPUSet reserved_;
  std::vector<int> numa_nodes_;
  std::map<int, int> numa_of_;  // CPU -> NUMA node
  mutable std::mutex mu_;
  CPUSet default_;
  std::map<std::string, std::map<std::string, CPUSet>> assignments_;  // pod UID -> container -> CPUs
  std::map<std::string, std::string> applied_;                        // container ID -> cpuset last pushed
  std::mutex loop_mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kubelet::cm
