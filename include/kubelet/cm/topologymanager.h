#pragma once
// Upstream's topology manager (pkg/kubelet/cm/topologymanager): at admission it asks each hint provider (the CPU
// manager and the device manager) which NUMA node sets could hold what a container (scope "container") or the whole
// pod (scope "pod") asks for, merges the hints under topologyManagerPolicy, keeps the merged affinity for the
// providers to allocate from, and rejects the pod with TopologyAffinityError where the policy says the resources
// cannot be aligned.
//
//   none              no hints gathered; the providers allocate as they would without a topology manager
//   best-effort       the best merged hint is kept, the pod is always admitted
//   restricted        admitted only when the best merged hint is a preferred one
//   single-numa-node  only hints of one NUMA node (or "any") are merged; admitted only when preferred
//
// Hints: a NUMA node set (a bit mask; none = any node) and whether it is preferred (as narrow as the request allows).
// The merge walks every combination of one hint per provider and resource, ANDs their masks and keeps the best:
// preferred over not, then the narrower mask (or, with prefer-closest-numa-nodes, the one with the shortest
// average distance between its nodes); non-preferred ones are picked as close as possible to the widest of the
// narrowest masks any provider needs.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "kubelet/api/types.h"
#include "kubelet/util/logging.h"

namespace kubelet::cm {

inline constexpr char kTopologyPolicyNone[] = "none";
inline constexpr char kTopologyPolicyBestEffort[] = "best-effort";
inline constexpr char kTopologyPolicyRestricted[] = "restricted";
inline constexpr char kTopologyPolicySingleNumaNode[] = "single-numa-node";
inline constexpr char kTopologyScopeContainer[] = "container";
inline constexpr char kTopologyScopePod[] = "pod";
inline constexpr char kTopologyAffinityError[] = "TopologyAffinityError";
inline constexpr char kTopologyAffinityErrorMessage[] = "Resources cannot be allocated with Topology locality";
inline constexpr int kDefaultMaxAllowableNUMANodes = 8;

/** A set of NUMA node IDs 0..63. */
class BitMask {
 public:
  BitMask() = default;
  explicit BitMask(uint64_t bits) : bits_(bits) {}
  /** The mask of these nodes; an error for an ID outside 0..63. */
  static absl::StatusOr<BitMask> Of(const std::vector<int>& nodes);
  uint64_t value() const { return bits_; }
  int Count() const;
  bool IsEmpty() const { return bits_ == 0; }
  bool IsSet(int node) const { return node >= 0 && node < 64 && (bits_ >> node) & 1; }
  bool AnySet(const std::vector<int64_t>& nodes) const;
  /** Fewer nodes, or as many with the lower-numbered ones. */
  bool IsNarrowerThan(const BitMask& other) const;
  bool IsLessThan(const BitMask& other) const { return bits_ < other.bits_; }
  BitMask And(const BitMask& other) const { return BitMask(bits_ & other.bits_); }
  std::vector<int> Bits() const;
  /** Binary, as upstream prints it in its logs ("01", "10", "0011"). */
  std::string String() const;
  bool operator==(const BitMask& o) const { return bits_ == o.bits_; }
  bool operator!=(const BitMask& o) const { return bits_ != o.bits_; }

 private:
  uint64_t bits_ = 0;
};

/** Every non-empty subset of `nodes`, by size and then in the order the nodes are given (upstream's order). */
void IterateBitMasks(const std::vector<int>& nodes, const std::function<void(const BitMask&)>& fn);

struct TopologyHint {
  std::optional<BitMask> affinity;  // none: any NUMA node
  bool preferred = false;
  bool operator==(const TopologyHint& o) const { return affinity == o.affinity && preferred == o.preferred; }
  /** As upstream logs a hint: "{01 true}", "{<nil> false}". */
  std::string String() const;
};

/** A provider's hints per resource: nullopt = no preference for that resource, an empty list = it cannot be placed. */
using TopologyHints = std::map<std::string, std::optional<std::vector<TopologyHint>>>;

/** The machine's NUMA nodes and the distances between them (sysfs node<N>/distance, by node ID). */
struct NUMAInfo {
  std::vector<int> nodes;
  std::map<int, std::vector<uint64_t>> distances;
  BitMask DefaultAffinityMask() const;
  BitMask Narrowest(const BitMask& a, const BitMask& b) const;
  /** The mask of shorter average distance among masks of as many nodes (else the narrowest). */
  BitMask Closest(const BitMask& a, const BitMask& b) const;
  double AverageDistance(const BitMask& m) const;
};

/** From /sys/devices/system/node: node<N> folders and their distance files; a machine without them is one node 0. */
NUMAInfo DiscoverNUMA(const std::string& sysfs_node = "/sys/devices/system/node");

struct TopologyPolicyOptions {
  bool prefer_closest_numa = false;  // prefer-closest-numa-nodes
  int max_allowable_numa_nodes = kDefaultMaxAllowableNUMANodes;  // max-allowable-numa-nodes
};
/** topologyManagerPolicyOptions, with upstream's errors for unknown options and bad values. */
absl::StatusOr<TopologyPolicyOptions> ParseTopologyPolicyOptions(const std::map<std::string, std::string>& options);

/** One policy's merge of the providers' hints: the best hint and whether the pod may be admitted with it. */
std::pair<TopologyHint, bool> MergeTopologyHints(const std::string& policy, const NUMAInfo& numa, const TopologyPolicyOptions& opts,
                                                 const std::vector<TopologyHints>& providers);

/** What the CPU manager and the device manager offer the topology manager (upstream's HintProvider). */
class HintProvider {
 public:
  virtual ~HintProvider() = default;
  virtual TopologyHints GetTopologyHints(const api::Pod& pod, const api::Container& c) = 0;
  virtual TopologyHints GetPodTopologyHints(const api::Pod& pod) = 0;
  /** Allocates (or reserves) what the container needs, within the affinity the store now holds for it. */
  virtual absl::Status Allocate(const api::Pod& pod, const api::Container& c) = 0;
};

/** Where the providers read the affinity a container was admitted with (upstream's Store). */
class AffinityStore {
 public:
  virtual ~AffinityStore() = default;
  /** The merged hint for the container; an "any node" hint when none is kept. */
  virtual TopologyHint GetAffinity(const std::string& pod_uid, const std::string& container) const = 0;
};

struct TopologyAdmitResult {
  bool admit = true;
  std::string reason, message;
};

struct TopologyManagerOptions {
  std::string policy = kTopologyPolicyNone;        // topologyManagerPolicy
  std::string scope = kTopologyScopeContainer;     // topologyManagerScope
  std::map<std::string, std::string> policy_options;  // topologyManagerPolicyOptions
  // kubelet_topology_manager_admission_{requests_total,errors_total,duration_ms}
  std::function<void()> on_request;
  std::function<void()> on_error;
  std::function<void(double ms)> on_duration;
  // The pods whose affinities are kept; read when the kept ones outgrow twice what was active at the last look.
  std::function<std::set<std::string>()> active_pods;
};

class TopologyManager : public AffinityStore {
 public:
  /** Upstream's checks: a known policy and scope, valid options, no more NUMA nodes than max-allowable-numa-nodes. */
  static absl::StatusOr<std::unique_ptr<TopologyManager>> New(NUMAInfo numa, TopologyManagerOptions o);
  /** Providers are consulted and allocate in the order they were added (upstream: CPU, memory, devices). */
  void AddHintProvider(HintProvider* p);
  /** The admission handler: hints, merge, affinity kept, providers' Allocate; the result as upstream's. */
  TopologyAdmitResult Admit(const api::Pod& pod);
  TopologyHint GetAffinity(const std::string& pod_uid, const std::string& container) const override;
  /** Forgets a pod's affinities (a pod refused or gone). */
  void RemovePod(const std::string& uid);
  /** Keeps the affinities of these pods only. */
  void Prune(const std::set<std::string>& active);
  size_t PodsTracked() const;
  const std::string& policy() const { return o_.policy; }
  const std::string& scope() const { return o_.scope; }
  const NUMAInfo& numa() const { return numa_; }

 private:
  TopologyManager(NUMAInfo numa, TopologyManagerOptions o, TopologyPolicyOptions po);
  std::pair<TopologyHint, bool> Calculate(const api::Pod& pod, const api::Container* c);
  TopologyAdmitResult AllocateAll(const api::Pod& pod, const api::Container& c);
  void SetAffinity(const std::string& uid, const std::string& container, const TopologyHint& h);
  void MaybePrune();
  NUMAInfo numa_;
  TopologyManagerOptions o_;
  TopologyPolicyOptions po_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<HintProvider*> providers_;
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, TopologyHint>> hints_;  // pod UID -> container -> affinity
  size_t prune_at_ = 64;
};

/** The unexpected-error form of an admission failure, as upstream words it. */
TopologyAdmitResult UnexpectedAdmissionError(const absl::Status& st);

}  // namespace kubelet::cm
