#pragma once
// Cgroups as the kubelet's container manager uses them: a cgroup is named by
// its components ({"kubepods", "burstable", "pod<UID>"}), the driver turns
// the name into a path (cgroupfs: /kubepods/burstable/pod<UID>; systemd:
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID>.slice,
// '-' in a component written '_'), and the manager writes the limits into the
// hierarchy found at start (cgroup v1: one mount per controller; v2: the
// unified mount).
//
// The systemd driver places and names cgroups as systemd does but writes them
// through the cgroup filesystem; it does not create units over D-Bus.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kubelet::cm {

enum class CgroupVersion { kV1, kV2 };

/** Where the cgroup hierarchies are mounted. */
struct CgroupLayout {
  CgroupVersion version = CgroupVersion::kV1;
  std::map<std::string, std::string> v1;  // controller -> mount point (v1)
  std::string unified;                    // the cgroup2 mount (v2)
};

/** Reads the layout from mountinfo: v2 when /sys/fs/cgroup-style unified is the only hierarchy with controllers. */
absl::StatusOr<CgroupLayout> DetectCgroupLayout(const std::string& mountinfo_path = "/proc/self/mountinfo");

using CgroupName = std::vector<std::string>;

/** cgroupfs form: "/kubepods/burstable/pod1"; "/" for the root. */
std::string ToCgroupfs(const CgroupName& name);
/** systemd form: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"; "/" for the root. */
std::string ToSystemd(const CgroupName& name);
/** A cgroupfs path back to components. */
CgroupName ParseCgroupfs(const std::string& path);
/** A systemd path or slice back to components (the last slice's name, '_' kept as written). */
CgroupName ParseSystemd(const std::string& path);

/** What may be set on a cgroup; unset fields are left alone. */
struct ResourceConfig {
  std::optional<uint64_t> cpu_shares;  // v1 cpu.shares; v2 cpu.weight from it
  std::optional<int64_t> cpu_quota;    // microseconds; -1 = no limit
  std::optional<uint64_t> cpu_period;  // microseconds
  std::optional<int64_t> memory;       // bytes; -1 = no limit
  std::optional<int64_t> pids_limit;   // -1 = no limit
  std::optional<std::string> cpuset_cpus;
  std::optional<uint64_t> cpu_weight;  // v2, filled by Read only (Create/Update derive it from cpu_shares)
};

struct CgroupMemoryStats {
  uint64_t usage = 0;          // v1 memory.usage_in_bytes, v2 memory.current
  uint64_t working_set = 0;    // usage - inactive_file, as cAdvisor computes it
  uint64_t rss = 0;            // v1 total_rss, v2 anon
  uint64_t page_faults = 0;
  uint64_t major_page_faults = 0;
  uint64_t limit = 0;          // 0: none
};

struct CgroupCpuStats {
  uint64_t usage_nanos = 0;  // cumulative
};

// Upstream's conversions between CPU quantities and cgroup values.
constexpr uint64_t kMinShares = 2;
constexpr uint64_t kMaxShares = 262144;
constexpr int64_t kMinQuotaPeriod = 1000;  // microseconds
uint64_t MilliCPUToShares(int64_t milli_cpu);
int64_t MilliCPUToQuota(int64_t milli_cpu, int64_t period_us);
uint64_t CpuSharesToCpuWeight(uint64_t shares);

class CgroupManager {
 public:
  CgroupManager(CgroupLayout layout, std::string driver);  // driver: "cgroupfs" or "systemd"
  const std::string& driver() const { return driver_; }
  CgroupVersion version() const { return layout_.version; }
  /** The driver's form of `name`: what CRI gets as cgroup_parent. */
  std::string Name(const CgroupName& name) const;
  /** Whether the cgroup exists in every controller the kubelet needs (cpu, cpuacct, cpuset, memory, pids on v1). */
  bool Exists(const CgroupName& name) const;
  /** Creates the cgroup (and missing parents) in every hierarchy and applies `rc`. Idempotent. */
  absl::Status Create(const CgroupName& name, const ResourceConfig& rc);
  absl::Status Update(const CgroupName& name, const ResourceConfig& rc);
  /** Kills what still runs inside, then removes the cgroup and its children in every hierarchy. */
  absl::Status Destroy(const CgroupName& name);
  /** Processes inside the cgroup and its children. */
  std::vector<int> Pids(const CgroupName& name) const;
  /** Child cgroup names (as components) of `name`. */
  std::vector<CgroupName> Children(const CgroupName& name) const;
  absl::StatusOr<CgroupMemoryStats> MemoryStats(const CgroupName& name) const;
  absl::StatusOr<CgroupCpuStats> CpuStats(const CgroupName& name) const;
  /** The limits set now (for tests and for reconciling). */
  ResourceConfig Read(const CgroupName& name) const;
  /** The directory of `name` in `controller`'s hierarchy (v2: the unified one). Empty when not mounted. */
  std::string Dir(const CgroupName& name, const std::string& controller) const;

 private:
  std::vector<std::string> Hierarchies(const CgroupName& name) const;  // one directory per distinct mount
  absl::Status Apply(const CgroupName& name, const ResourceConfig& rc);
  absl::Status ApplyV1CpuMemory(const CgroupName& name, const ResourceConfig& rc);
  CgroupLayout layout_;
  std::string driver_;
};

}  // namespace kubelet::cm
