#pragma once
// KubeGenericRuntimeManager: turns a desired pod into CRI calls. SyncPod
// computes the actions (as upstream's computePodActions) from the pod spec
// and the runtime's PodStatus, then creates the sandbox, pulls images and
// starts, kills and restarts containers.
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/runtimeclass/runtimeclass_manager.h"
#include "kubelet/api/types.h"
#include "kubelet/cm/device_run_options.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/events/recorder.h"
#include "kubelet/kuberuntime/env.h"
#include "kubelet/kuberuntime/types.h"
#include "kubelet/util/backoff.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace kubelet::metrics {
class KubeletMetrics;
}
namespace kubelet::network {
class CNIRunner;
}

namespace kubelet::kuberuntime {

struct ContainerToKill {
  std::string name;
  std::string message;
  std::string reason;
};

/** What SyncPod must do, as upstream's podActions. */
struct PodActions {
  bool kill_pod = false;
  bool create_sandbox = false;
  std::string sandbox_id;
  uint32_t attempt = 0;
  std::vector<size_t> init_containers_to_start;             // indexes into spec.initContainers, in order
  std::vector<size_t> containers_to_start;                  // indexes into spec.containers
  std::map<std::string, ContainerToKill> containers_to_kill;  // by container ID
};

/**
 * The latest liveness and startup probe results by container ID (nullopt: no
 * result yet), as upstream's results managers; empty functions mean no prober.
 */
struct ProbeLookup {
  std::function<std::optional<bool>(const std::string& container_id)> liveness;
  std::function<std::optional<bool>(const std::string& container_id)> startup;
};

/** Whether the container should be (re)started given what the runtime shows. */
bool ShouldContainerBeRestarted(const api::Pod& pod, const api::Container& c, const PodStatus& status);
PodActions ComputePodActions(const api::Pod& pod, const PodStatus& status, const ProbeLookup& probes = {});
/** FNV-32a of the container's name and image (upstream's pickFieldsToHash), hex: a new image restarts the container. */
std::string HashContainer(const api::Container& c);
/** Whether a container's hash label still matches the spec (also a hash written by an earlier kubelet-cpp). */
bool ContainerHashMatches(const std::string& label, const api::Container& c);

/** Waiting reasons the status shows for containers that cannot start (CrashLoopBackOff, ErrImagePull, ...). */
struct WaitingReason {
  std::string reason;
  std::string message;
};

struct SyncResult {
  absl::Status error;  // the first failure, OK if none
  bool started_any = false;
};

struct RuntimeManagerOptions {
  std::string pod_logs_dir = "/var/log/pods";
  // Where the <pod>_<ns>_<container>-<id>.log links go: /var/log/containers beside the default
  // podLogsDir, "<parent of podLogsDir>/containers" when podLogsDir is set elsewhere.
  std::string container_logs_dir;
  std::string pods_dir = "/var/lib/kubelet/pods";
  std::vector<std::string> cluster_dns;
  std::string cluster_domain;
  std::string resolv_conf = "/etc/resolv.conf";
  bool serialize_image_pulls = true;
  int max_parallel_image_pulls = 0;
  bool cpu_cfs_quota = true;
  Duration cpu_cfs_quota_period = std::chrono::milliseconds(100);
  int64_t machine_memory_bytes = 0;
  std::string node_name;
  std::string node_ip;
  Duration runtime_request_timeout = std::chrono::minutes(2);  // postStart hooks
  bool seccomp_default = false;  // seccompDefault
  bool allow_privileged = true;
};

class RuntimeManager {
 public:
  virtual ~RuntimeManager() = default;
  /** Runtime name and version, e.g. "containerd" "1.6.20~ds1". */
  virtual absl::StatusOr<cri::rt::VersionResponse> Version() = 0;
  /** Everything the runtime runs, grouped by pod UID (PLEG's relist). */
  virtual absl::StatusOr<std::vector<RuntimePod>> GetPods(bool all) = 0;
  /** Full status of one pod: sandboxes and containers with their details. */
  virtual absl::StatusOr<PodStatus> GetPodStatus(const std::string& uid, const std::string& name,
                                                 const std::string& ns) = 0;
  virtual SyncResult SyncPod(const api::Pod& pod, const PodStatus& status, Backoff* backoff,
                             const ProbeLookup& probes = {}) = 0;
  /** The container's log file (CRI log path) and whether it still runs: /containerLogs. */
  virtual absl::StatusOr<std::pair<std::string, bool>> ContainerLog(const std::string& container_id) = 0;
  /** Runs a command in the container (exec probes and hooks), with a timeout; the call is given up at call_deadline (0: the default). */
  virtual absl::StatusOr<cri::rt::ExecSyncResponse> ExecSync(const std::string& container_id, const std::vector<std::string>& cmd,
                                                             Duration timeout, Duration call_deadline = Duration::zero()) = 0;
  /** Stops all containers with the grace period, then the sandboxes. */
  virtual absl::Status KillPod(const api::Pod* pod, const RuntimePod& running, std::optional<int64_t> grace_override) = 0;
  /** Removes a pod's stopped containers and sandboxes and its log folder. */
  virtual absl::Status RemovePod(const RuntimePod& pod) = 0;
  /** Removes dead containers beyond the newest per container name for kept pods. */
  virtual absl::Status GarbageCollect(const std::vector<RuntimePod>& pods, const std::map<std::string, bool>& active_uids) = 0;
  virtual std::optional<WaitingReason> GetWaitingReason(const std::string& uid, const std::string& container) = 0;
  virtual void ForgetPod(const std::string& uid) = 0;
  virtual std::string RuntimeType() = 0;
};

struct RuntimeManagerDeps {
  cri::RuntimeService* runtime;
  cri::ImageService* images;
  volumemanager::VolumeManager* volumes;
  events::EventRecorder* recorder;
  metrics::KubeletMetrics* metrics;
  const Clock* clock;
  EnvSource* env_source = nullptr;  // ConfigMaps, Secrets, Services; null standalone
  // Kubelet network mode (--network-plugin=cni): the kubelet attaches the pod network itself. Null: the runtime does.
  network::CNIRunner* cni = nullptr;
  // The pod cgroup in the driver's form (the sandbox's cgroup_parent); unset or empty: the runtime's default.
  std::function<std::string(const api::Pod&)> pod_cgroup_parent;
  // The cpuset a container starts with (the CPU manager's); unset or empty: the runtime's default.
  std::function<std::string(const api::Pod&, const std::string& container)> container_cpuset;
  // What the device plugins give the container (envs, mounts, device nodes, annotations, CDI devices); unset: nothing.
  std::function<absl::StatusOr<cm::DeviceRunContainerOptions>(const api::Pod&, const api::Container&)> container_devices;
  // The pod's runtime handler from its runtimeClassName; null: every pod on the runtime's default (standalone, as
  // upstream without an API server).
  const runtimeclass::RuntimeClassManager* runtime_classes = nullptr;
};

std::unique_ptr<RuntimeManager> NewRuntimeManager(const RuntimeManagerDeps& deps, const RuntimeManagerOptions& options);

}  // namespace kubelet::kuberuntime
