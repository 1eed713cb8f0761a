#include "kubelet/cm/container_manager.h"

#include <algorithm>

#include "kubelet/api/quantity.h"

namespace kubelet::cm {

namespace {

int64_t Quantity(const api::StringMap& m, const char* key, bool milli) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  auto q = api::ParseQuantity(it->second);
  if (!q.ok()) return 0;
  return milli ? q->MilliValue() : q->Value();
}

bool Has(const std::vector<std::string>& list, const std::string& v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

const char* kPodPrefix = "pod";

}  // namespace

PodResourceTotals ComputePodResources(const api::Pod& pod) {
  PodResourceTotals t;
  // Requests default to limits (as the API server defaults them); limits stand alone.
  auto request = [](const api::Container& c, const char* r, bool milli) {
    int64_t v = Quantity(c.resources.requests, r, milli);
    return c.resources.requests.count(r) ? v : Quantity(c.resources.limits, r, milli);
  };
  struct Sum {
    int64_t cpu = 0, mem = 0;
  };
  // As upstream's PodRequests/PodLimits with sidecars: they run beside every later init container and the main ones.
  auto total = [&](auto get_cpu, auto get_mem) {
    Sum main, init, side;
    for (const auto& c : pod.spec.containers) {
      main.cpu += get_cpu(c);
      main.mem += get_mem(c);
    }
    for (const auto& c : pod.spec.init_containers) {
      int64_t cpu = get_cpu(c), mem = get_mem(c);
      if (api::IsRestartableInitContainer(c)) {
        side.cpu += cpu;
        side.mem += mem;
        init.cpu = std::max(init.cpu, side.cpu);
        init.mem = std::max(init.mem, side.mem);
      } else {
        init.cpu = std::max(init.cpu, cpu + side.cpu);
        init.mem = std::max(init.mem, mem + side.mem);
      }
    }
    return Sum{std::max(main.cpu + side.cpu, init.cpu), std::max(main.mem + side.mem, init.mem)};
  };
  Sum req = total([&](const api::Container& c) { return request(c, "cpu", true); },
                  [&](const api::Container& c) { return request(c, "memory", false); });
  Sum lim = total([](const api::Container& c) { return Quantity(c.resources.limits, "cpu", true); },
                  [](const api::Container& c) { return Quantity(c.resources.limits, "memory", false); });
  // The pod's overhead (spec.overhead, from its RuntimeClass) counts in its requests, and in a limit the pod has.
  int64_t over_cpu = Quantity(pod.spec.overhead, "cpu", true), over_mem = Quantity(pod.spec.overhead, "memory", false);
  t.cpu_request_milli = req.cpu + over_cpu;
  t.memory_request = req.mem + over_mem;
  t.cpu_limit_milli = lim.cpu > 0 ? lim.cpu + over_cpu : 0;
  t.memory_limit = lim.mem > 0 ? lim.mem + over_mem : 0;
  auto declared = [&](const api::Container& c) {
    if (Quantity(c.resources.limits, "cpu", true) == 0) t.all_cpu_limits = false;
    if (Quantity(c.resources.limits, "memory", false) == 0) t.all_memory_limits = false;
  };
  for (const auto& c : pod.spec.containers) declared(c);
  for (const auto& c : pod.spec.init_containers) declared(c);
  return t;
}

ResourceConfig ResourceConfigForPod(const api::Pod& pod, bool enforce_cpu_limits, int64_t cpu_period_us) {
  PodResourceTotals t = ComputePodResources(pod);
  uint64_t shares = MilliCPUToShares(t.cpu_request_milli);
  int64_t quota = MilliCPUToQuota(t.cpu_limit_milli, cpu_period_us);
  if (!enforce_cpu_limits) quota = -1;
  std::string qos = api::QOSClass(pod);
  ResourceConfig rc;
  if (qos == "Guaranteed") {
    rc.cpu_shares = shares;
    rc.cpu_quota = quota;
    rc.cpu_period = static_cast<uint64_t>(cpu_period_us);
    rc.memory = t.memory_limit;
  } else if (qos == "Burstable") {
    rc.cpu_shares = shares;
    if (t.all_cpu_limits) {
      rc.cpu_quota = quota;
      rc.cpu_period = static_cast<uint64_t>(cpu_period_us);
    }
    if (t.all_memory_limits) rc.memory = t.memory_limit;
  } else {
    rc.cpu_shares = kMinShares;
  }
  return rc;
}

ContainerManager::ContainerManager(std::unique_ptr<CgroupManager> cgroups, ContainerManagerOptions o)
    : cgroups_(std::move(cgroups)), o_(std::move(o)), log_(log::Get("container_manager")) {}

CgroupName ContainerManager::Root() const {
  const std::string& root = o_.cgroup_root.empty() ? std::string("/") : o_.cgroup_root;
  return cgroups_->driver() == "systemd" ? ParseSystemd(root) : ParseCgroupfs(root);
}

CgroupName ContainerManager::Kubepods() const {
  CgroupName n = Root();
  n.push_back("kubepods");
  return n;
}

NodeResources ContainerManager::AllocatableForCgroups() const {
  NodeResources a = o_.capacity;
  for (const auto* reserved : {&o_.system_reserved, &o_.kube_reserved}) {
    a.milli_cpu -= Quantity(*reserved, "cpu", true);
    a.memory -= Quantity(*reserved, "memory", false);
    if (a.pids > 0) a.pids -= Quantity(*reserved, "pid", false);
  }
  a.milli_cpu = std::max<int64_t>(a.milli_cpu, 0);
  a.memory = std::max<int64_t>(a.memory, 0);
  a.pids = std::max<int64_t>(a.pids, 0);
  return a;
}

absl::Status ContainerManager::EnforceReserved(const std::string& key, const std::string& cgroup,
                                               const std::map<std::string, std::string>& reserved) {
  if (cgroup.empty())
    return absl::InvalidArgumentError("invalid configuration: " + key + "Cgroup (--" + key +
                                      "-cgroup) must be specified when \"" + key +
                                      "-reserved\" contained in enforceNodeAllocatable (--enforce-node-allocatable)");
  CgroupName name = cgroups_->driver() == "systemd" ? ParseSystemd(cgroup) : ParseCgroupfs(cgroup);
  if (!cgroups_->Exists(name))
    return absl::FailedPreconditionError("failed to enforce " + key + " reserved cgroup limits on \"" + cgroup +
                                         "\": cgroup \"" + cgroup + "\" does not exist");
  ResourceConfig rc;
  if (int64_t cpu = Quantity(reserved, "cpu", true); cpu > 0) rc.cpu_shares = MilliCPUToShares(cpu);
  if (int64_t mem = Quantity(reserved, "memory", false); mem > 0) rc.memory = mem;
  if (int64_t pids = Quantity(reserved, "pid", false); pids > 0) rc.pids_limit = pids;
  log_->info("Enforcing {} reserved cgroup limits cgroup=\"{}\"", key, cgroup);
  return cgroups_->Update(name, rc);
}

absl::Status ContainerManager::Start(const std::optional<std::string>& runtime_cgroup_driver) {
  if (runtime_cgroup_driver && !runtime_cgroup_driver->empty() && *runtime_cgroup_driver != cgroups_->driver())
    return absl::FailedPreconditionError("misconfiguration: kubelet cgroup driver: \"" + cgroups_->driver() +
                                         "\" is different from the container runtime's cgroup driver: \"" +
                                         *runtime_cgroup_driver + "\"");
  if (!o_.cgroups_per_qos) return absl::OkStatus();
  CgroupName root = Root();
  if (!root.empty() && !cgroups_->Exists(root))
    return absl::FailedPreconditionError("invalid configuration: cgroup-root \"" + o_.cgroup_root + "\" doesn't exist");

  // kubepods: node allocatable when enforced, else capacity (its default cpu shares would starve the pods).
  NodeResources limit = Has(o_.enforce_node_allocatable, "pods") ? AllocatableForCgroups() : o_.capacity;
  ResourceConfig kp;
  kp.cpu_shares = MilliCPUToShares(limit.milli_cpu);
  if (limit.memory > 0) kp.memory = limit.memory;
  if (limit.pids > 0) kp.pids_limit = limit.pids;
  if (auto st = cgroups_->Create(Kubepods(), kp); !st.ok())
    return absl::Status(st.code(), "failed to create the kubepods cgroup: " + std::string(st.message()));
  log_->info("Pods cgroup limits set cgroup=\"{}\" nodeAllocatableEnforced={} cpuShares={} memory={} pids={}",
             cgroups_->Name(Kubepods()), Has(o_.enforce_node_allocatable, "pods"), *kp.cpu_shares, limit.memory, limit.pids);
  if (Has(o_.enforce_node_allocatable, "system-reserved"))
    if (auto st = EnforceReserved("system", o_.system_reserved_cgroup, o_.system_reserved); !st.ok()) return st;
  if (Has(o_.enforce_node_allocatable, "kube-reserved"))
    if (auto st = EnforceReserved("kube", o_.kube_reserved_cgroup, o_.kube_reserved); !st.ok()) return st;

  for (const char* qos : {"burstable", "besteffort"}) {
    CgroupName n = Kubepods();
    n.push_back(qos);
    ResourceConfig rc;
    if (std::string(qos) == "besteffort") rc.cpu_shares = kMinShares;
    if (auto st = cgroups_->Create(n, rc); !st.ok())
      return absl::Status(st.code(), "failed to create the " + std::string(qos) + " QoS cgroup: " + std::string(st.message()));
  }
  return absl::OkStatus();
}

CgroupName ContainerManager::PodCgroup(const api::Pod& pod) const {
  CgroupName n = Kubepods();
  std::string qos = api::QOSClass(pod);
  if (qos == "Burstable") n.push_back("burstable");
  if (qos == "BestEffort") n.push_back("besteffort");
  n.push_back(kPodPrefix + pod.metadata.uid);
  return n;
}

std::string ContainerManager::PodCgroupParent(const api::Pod& pod) const {
  if (!o_.cgroups_per_qos) return "";
  return cgroups_->Name(PodCgroup(pod));
}

absl::Status ContainerManager::EnsurePodCgroup(const api::Pod& pod) {
  if (!o_.cgroups_per_qos) return absl::OkStatus();
  CgroupName name = PodCgroup(pod);
  if (cgroups_->Exists(name)) return absl::OkStatus();
  int64_t period = o_.cpu_cfs_quota_period.count();
  ResourceConfig rc = ResourceConfigForPod(pod, o_.cpu_cfs_quota, period);
  if (o_.pod_pids_limit > 0) rc.pids_limit = o_.pod_pids_limit;
  if (auto st = cgroups_->Create(name, rc); !st.ok())
    return absl::Status(st.code(), "failed to ensure that the pod: " + pod.metadata.uid +
                                       " cgroups exist and are correctly applied: " + std::string(st.message()));
  return absl::OkStatus();
}

std::optional<CgroupName> ContainerManager::FindPodCgroup(const std::string& uid) const {
  if (!o_.cgroups_per_qos) return std::nullopt;
  for (const char* qos : {"", "burstable", "besteffort"}) {
    CgroupName n = Kubepods();
    if (*qos) n.push_back(qos);
    n.push_back(kPodPrefix + uid);
    std::error_code ec;
    for (const char* c : {"cpu", "memory", "pids", ""}) {
      std::string d = cgroups_->Dir(n, c);
      if (!d.empty() && std::filesystem::is_directory(d, ec)) return n;
    }
  }
  return std::nullopt;
}

absl::Status ContainerManager::DestroyPodCgroup(const std::string& uid) {
  if (!o_.cgroups_per_qos) return absl::OkStatus();
  // A pod's QoS class never changes, but look everywhere: a leftover may sit anywhere.
  for (int round = 0; round < 3; ++round) {
    auto found = FindPodCgroup(uid);
    if (!found) break;
    const CgroupName& n = *found;
    auto st = cgroups_->Destroy(n);
    if (!st.ok()) return st;
    log_->info("Removed pod cgroup podUID=\"{}\" cgroup=\"{}\"", uid, cgroups_->Name(n));
  }
  return absl::OkStatus();
}

std::set<std::string> ContainerManager::PodCgroupUIDs() const {
  std::set<std::string> out;
  if (!o_.cgroups_per_qos) return out;
  for (const char* qos : {"", "burstable", "besteffort"}) {
    CgroupName parent = Kubepods();
    if (*qos) parent.push_back(qos);
    for (const auto& child : cgroups_->Children(parent)) {
      if (child.empty()) continue;
      const std::string& last = child.back();
      if (last.rfind(kPodPrefix, 0) == 0 && last.size() > 3) out.insert(last.substr(3));
    }
  }
  return out;
}

absl::Status ContainerManager::UpdateQOSCgroups(const std::vector<const api::Pod*>& active) {
  if (!o_.cgroups_per_qos) return absl::OkStatus();
  std::lock_guard<std::mutex> l(mu_);
  int64_t burstable_milli = 0;
  for (const api::Pod* p : active)
    if (api::QOSClass(*p) == "Burstable") burstable_milli += ComputePodResources(*p).cpu_request_milli;
  CgroupName burstable = Kubepods(), besteffort = Kubepods();
  burstable.push_back("burstable");
  besteffort.push_back("besteffort");
  ResourceConfig b, be;
  b.cpu_shares = MilliCPUToShares(burstable_milli);
  be.cpu_shares = kMinShares;
  if (auto st = cgroups_->Update(burstable, b); !st.ok()) return st;
  return cgroups_->Update(besteffort, be);
}

}  // namespace kubelet::cm
