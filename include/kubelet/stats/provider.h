#pragma once
// Node and pod statistics, as upstream's Summary API (stats/v1alpha1) shows
// them: the node from the root cgroup, /proc and statfs; pods from their pod
// cgroups (cpu, memory) and the sandbox's network namespace; containers from
// CRI ListContainerStats; the image filesystem from CRI ImageFsInfo. One
// collection serves every reader until it is older than the max age, so a
// scrape, the eviction manager and image GC share the cost.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/cm/container_manager.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/util/clock.h"

namespace kubelet::stats {

struct CpuStats {
  TimePoint time{};
  std::optional<uint64_t> usage_nano_cores;  // a rate: needs an earlier sample
  uint64_t usage_core_nano_seconds = 0;
};

struct MemoryStats {
  TimePoint time{};
  std::optional<uint64_t> available_bytes;
  uint64_t usage_bytes = 0;
  uint64_t working_set_bytes = 0;
  uint64_t rss_bytes = 0;
  uint64_t page_faults = 0;
  uint64_t major_page_faults = 0;
};

struct FsStats {
  TimePoint time{};
  uint64_t available_bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t inodes_free = 0;
  uint64_t inodes = 0;
  uint64_t inodes_used = 0;
};

struct InterfaceStats {
  std::string name;
  uint64_t rx_bytes = 0, rx_errors = 0, tx_bytes = 0, tx_errors = 0;
};

struct NetworkStats {
  TimePoint time{};
  std::vector<InterfaceStats> interfaces;  // the first is the default one
};

/** A volume of a pod (stats/v1alpha1 VolumeStats): its usage, the claim it is, its health where the plugin says. */
struct VolumeStats {
  std::string name;
  std::string pvc_name, pvc_namespace;  // set for claims (pvcRef)
  FsStats fs;
  std::optional<bool> abnormal;  // volumeHealthStats, from a CSI driver with VOLUME_CONDITION
  std::string message;           // the driver's condition message
};

struct ContainerStats {
  std::string name;
  std::string id;
  std::string image;        // the image the container runs, as the runtime reports it
  std::string cgroup_path;  // cAdvisor's id: the container's cgroup (empty when the pod's is unknown)
  TimePoint start_time{};
  CpuStats cpu;
  MemoryStats memory;
  std::optional<FsStats> rootfs;
  uint64_t logs_used_bytes = 0;  // its CRI log files
};

struct PodStats {
  std::string name, namespace_, uid;
  std::string cgroup_path;  // the pod's cgroup as cAdvisor names it (the driver's path form); empty when unknown
  TimePoint start_time{};
  std::vector<ContainerStats> containers;
  CpuStats cpu;
  MemoryStats memory;
  std::optional<NetworkStats> network;
  uint64_t process_count = 0;
  uint64_t ephemeral_used_bytes = 0;  // writable layers + logs + local (emptyDir on disk) volumes
  std::map<std::string, uint64_t> volume_used_bytes;  // emptyDir volumes by name
  std::vector<VolumeStats> volumes;                   // emptyDir (used bytes, the filesystem's capacity) and CSI
};

struct NodeStats {
  std::string node_name;
  TimePoint start_time{};
  CpuStats cpu;
  MemoryStats memory;
  std::optional<NetworkStats> network;
  FsStats fs;                     // nodefs: the kubelet's root dir
  std::optional<FsStats> image_fs;  // the runtime's image filesystem
  uint64_t max_pid = 0, cur_proc = 0;
  std::optional<CpuStats> pods_cpu;        // the kubepods cgroup ("pods" system container)
  std::optional<MemoryStats> pods_memory;
};

struct Summary {
  NodeStats node;
  std::vector<PodStats> pods;
};

/** The Summary API object (k8s.io/kubelet/pkg/apis/stats/v1alpha1). */
nlohmann::json EncodeSummary(const Summary& s);
/** /metrics/resource in the Prometheus text format, with the sample times as upstream. */
std::string EncodeResourceMetrics(const Summary* s, bool scrape_error);
/**
 * /metrics/cadvisor from the same collection: the container_* series dashboards and kubectl-top pipelines read (cpu,
 * memory, start time, last seen, per-interface network of the pod) with cAdvisor's labels (container, id, image, name,
 * namespace, pod; container="" for the pod's and the node's cgroups), machine_cpu_cores, machine_memory_bytes and
 * container_scrape_error.
 */
std::string EncodeCadvisorMetrics(const Summary* s, bool scrape_error, int cpu_cores, int64_t memory_bytes);

struct ProviderOptions {
  std::string node_name;
  std::string root_dir = "/var/lib/kubelet";
  std::string pod_logs_dir = "/var/log/pods";
  std::string pods_dir;  // <root-dir>/pods: emptyDir volumes live under it (default: root_dir + "/pods")
  std::string proc_dir = "/proc";
  Duration max_age = std::chrono::seconds(10);
  int64_t machine_memory = 0;
  /** The pod's measured volumes (the FsResourceAnalyzer's cache); unset: emptyDir volumes only. */
  std::function<std::vector<VolumeStats>(const std::string& pod_uid)> pod_volume_stats;
};

/**
 * The kubelet_volume_stats_* series of /metrics (upstream's volumeStatsCollector): capacity, available and used
 * bytes, inodes, free and used inodes, and health_status_abnormal where known, for each claim of the summary's
 * pods, labelled namespace and persistentvolumeclaim; a claim used by several pods is reported once.
 */
std::string EncodeVolumeStatsMetrics(const Summary& s);

class StatsProvider {
 public:
  StatsProvider(cri::RuntimeService* runtime, cri::ImageService* images, cm::ContainerManager* cm, const Clock* clock,
                ProviderOptions o);
  /** The latest collection, collected now if older than max_age. */
  absl::StatusOr<std::shared_ptr<const Summary>> Get();
  /** Collects now (the eviction manager wants fresh numbers). */
  absl::StatusOr<std::shared_ptr<const Summary>> Refresh();

 private:
  absl::StatusOr<Summary> Collect();
  std::optional<uint64_t> Rate(const std::string& key, TimePoint t, uint64_t cumulative_ns);
  cri::RuntimeService* runtime_;
  cri::ImageService* images_;
  cm::ContainerManager* cm_;
  const Clock* clock_;
  ProviderOptions o_;
  std::mutex collect_mu_;  // one collection at a time
  std::mutex mu_;
  // Image IDs to the names pods use (cAdvisor's image label); read again only when a container's image is not in it,
  // at most once a minute. Under collect_mu_.
  std::map<std::string, std::string> image_names_;
  TimePoint image_names_at_{};
  std::string ImageName(const cri::rt::Container& c, TimePoint now);
  std::shared_ptr<const Summary> latest_;
  TimePoint latest_at_{};
  struct Sample {
    TimePoint t;
    uint64_t ns;
  };
  std::map<std::string, Sample> samples_;      // for usageNanoCores; pruned to what the last round saw
  std::map<std::string, Sample> next_samples_;
  std::map<std::string, int> sandbox_pids_;    // sandbox id -> pid (network namespace), pruned likewise
  TimePoint node_start_{};
};

}  // namespace kubelet::stats
