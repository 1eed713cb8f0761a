#include "kubelet/cm/cpu_manager.h"
#include "kubelet/util/fnv.h"
#include "kubelet/util/json.h"
#include "kubelet/util/guard.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kubelet/api/quantity.h"

namespace kubelet::cm {

namespace fs = std::filesystem;
using json = nlohmann::json;
namespace rt = ::runtime::v1;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}


}  // namespace

absl::StatusOr<CPUSet> ParseCPUSet(const std::string& text) {
  // Linux's largest NR_CPUS: an ID beyond it is not a CPU (and a range up to it must not fill memory).
  constexpr int kMaxCPUID = 8191;
  CPUSet out;
  std::string s;
  for (char c : text)
    if (c != ' ' && c != '\n') s += c;
  if (s.empty()) return out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) {
    size_t dash = part.find('-');
    try {
      size_t used = 0;
      if (dash == std::string::npos) {
        int v = std::stoi(part, &used);
        if (used != part.size() || v < 0 || v > kMaxCPUID) throw std::invalid_argument(part);
        out.insert(v);
      } else {
        std::string a = part.substr(0, dash), b = part.substr(dash + 1);
        size_t ua = 0, ub = 0;
        int lo = std::stoi(a, &ua), hi = std::stoi(b, &ub);
        if (ua != a.size() || ub != b.size() || lo < 0 || hi < lo || hi > kMaxCPUID) throw std::invalid_argument(part);
        for (int i = lo; i <= hi; ++i) out.insert(i);
      }
    } catch (...) {
      return absl::InvalidArgumentError("invalid cpuset \"" + text + "\"");
    }
  }
  return out;
}

std::string FormatCPUSet(const CPUSet& s) {
  std::string out;
  for (auto it = s.begin(); it != s.end();) {
    int lo = *it, hi = lo;
    auto next = std::next(it);
    while (next != s.end() && *next == hi + 1) {
      hi = *next;
      ++next;
    }
    out += (out.empty() ? "" : ",") + std::to_string(lo) + (hi > lo ? "-" + std::to_string(hi) : "");
    it = next;
  }
  return out;
}

std::vector<CPUInfo> DiscoverCPUs(const std::string& sysfs) {
  std::vector<CPUInfo> out;
  auto online = ParseCPUSet(ReadFile(sysfs + "/online"));
  CPUSet ids = online.ok() ? *online : CPUSet{};
  if (ids.empty()) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n; ++i) ids.insert(static_cast<int>(i));
  }
  for (int id : ids) {
    CPUInfo c;
    c.id = id;
    std::string base = sysfs + "/cpu" + std::to_string(id) + "/topology/";
    std::ifstream core(base + "core_id"), pkg(base + "physical_package_id");
    if (!(core >> c.core)) c.core = id;
    if (!(pkg >> c.socket)) c.socket = 0;
    std::error_code ec;
    for (fs::directory_iterator it(sysfs + "/cpu" + std::to_string(id), ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.size() > 4 && name.size() < 9 && name.compare(0, 4, "node") == 0 &&
          std::all_of(name.begin() + 4, name.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        c.numa = std::stoi(name.substr(4));
        break;
      }
    }
    out.push_back(c);
  }
  return out;
}

int GuaranteedCPUs(const api::Pod& pod, const api::Container& c) {
  if (api::QOSClass(pod) != "Guaranteed") return 0;
  // Requests default to limits, as the API server defaults them.
  const std::string* text = nullptr;
  if (auto r = c.resources.requests.find("cpu"); r != c.resources.requests.end()) text = &r->second;
  else if (auto lm = c.resources.limits.find("cpu"); lm != c.resources.limits.end()) text = &lm->second;
  if (!text) return 0;
  auto q = api::ParseQuantity(*text);
  if (!q.ok()) return 0;
  int64_t milli = q->MilliValue();
  if (milli <= 0 || milli % 1000 != 0) return 0;
  return static_cast<int>(milli / 1000);
}

CPUManager::CPUManager(std::vector<CPUInfo> cpus, CPUManagerOptions o, CPUManagerDeps d)
    : cpus_(std::move(cpus)), o_(std::move(o)), d_(std::move(d)), log_(log::Get("cpu_manager")) {
  std::sort(cpus_.begin(), cpus_.end(), [](const CPUInfo& a, const CPUInfo& b) {
    return std::tie(a.socket, a.core, a.id) < std::tie(b.socket, b.core, b.id);
  });
  std::set<int> nodes(o_.numa_nodes.begin(), o_.numa_nodes.end());
  for (const auto& c : cpus_) {
    all_.insert(c.id);
    numa_of_[c.id] = c.numa;
    if (o_.numa_nodes.empty()) nodes.insert(c.numa);
  }
  numa_nodes_.assign(nodes.begin(), nodes.end());
}

CPUManager::~CPUManager() { Stop(); }

absl::StatusOr<std::unique_ptr<CPUManager>> CPUManager::New(std::vector<CPUInfo> cpus, CPUManagerOptions o, CPUManagerDeps d) {
  if (o.policy != "none" && o.policy != "static")
    return absl::InvalidArgumentError("unknown policy: \"" + o.policy + "\"");
  std::unique_ptr<CPUManager> m(new CPUManager(std::move(cpus), std::move(o), std::move(d)));
  if (m->o_.policy == "static") {
    if (!m->o_.reserved_system_cpus.empty()) {
      auto r = ParseCPUSet(m->o_.reserved_system_cpus);
      if (!r.ok()) return r.status();
      for (int id : *r)
        if (!m->all_.count(id))
          return absl::InvalidArgumentError("reservedSystemCPUs \"" + m->o_.reserved_system_cpus + "\" is not a subset of the machine's CPUs \"" +
                                            FormatCPUSet(m->all_) + "\"");
      m->reserved_ = *r;
    } else {
      // ceil(reserved milli-CPU / 1000) CPUs, whole cores first in (socket, core) order.
      int64_t n = (m->o_.reserved_milli_cpu + 999) / 1000;
      for (const auto& c : m->cpus_) {
        if (static_cast<int64_t>(m->reserved_.size()) >= n) break;
        m->reserved_.insert(c.id);
      }
    }
    if (m->reserved_.empty())
      return absl::InvalidArgumentError("[cpumanager] unable to determine reserved CPU resources for static policy: the static "
                                        "policy requires systemreserved.cpu + kubereserved.cpu to be greater than zero");
    if (m->reserved_.size() >= m->all_.size())
      return absl::InvalidArgumentError("[cpumanager] the reserved CPUs \"" + FormatCPUSet(m->reserved_) +
                                        "\" leave no CPU for exclusive allocation");
  }
  if (auto st = m->Restore(); !st.ok()) return st;
  m->log_->info("CPU manager started policy=\"{}\" reserved=\"{}\" defaultCPUSet=\"{}\"", m->o_.policy, FormatCPUSet(m->reserved_),
                FormatCPUSet(m->default_));
  return m;
}

absl::Status CPUManager::Restore() {
  std::lock_guard<std::mutex> l(mu_);
  default_ = o_.policy == "static" ? all_ : CPUSet{};
  assignments_.clear();
  std::error_code ec;
  if (o_.state_file.empty() || !fs::exists(o_.state_file, ec)) return Checkpoint();
  std::string where = "could not restore state from checkpoint \"" + o_.state_file + "\": ";
  json j = json::parse(ReadFile(o_.state_file), nullptr, false);
  if (!j.is_object()) return absl::DataLossError(where + "checkpoint is corrupted");
  if ((j.contains("policyName") && !j["policyName"].is_string()) ||
      (j.contains("defaultCpuSet") && !j["defaultCpuSet"].is_string()))
    return absl::DataLossError(where + "checkpoint is corrupted");
  std::string policy = j.value("policyName", "");
  if (policy != o_.policy)
    return absl::FailedPreconditionError(where + "configured policy \"" + o_.policy + "\" differs from state checkpoint policy \"" +
                                         policy + "\", please drain this node and delete the CPU manager checkpoint file \"" +
                                         o_.state_file + "\" before restarting Kubelet");
  // Our checksum is FNV-32a over the document without it; a checkpoint another kubelet wrote is accepted when its
  // contents are consistent (checked below) and logged.
  if (j.contains("checksum")) {
    json body = j;
    body.erase("checksum");
    if (!j["checksum"].is_number_unsigned() || j["checksum"].get<uint64_t>() != Fnv32a(DumpJSON(body)))
      log_->warn("CPU manager checkpoint checksum is not this kubelet's; validating its contents path=\"{}\"", o_.state_file);
  }
  if (o_.policy != "static") return absl::OkStatus();
  auto def = ParseCPUSet(j.value("defaultCpuSet", ""));
  if (!def.ok()) return absl::DataLossError(where + std::string(def.status().message()));
  CPUSet seen = *def;
  std::map<std::string, std::map<std::string, CPUSet>> entries;
  if (j.contains("entries") && j["entries"].is_object())
    for (const auto& [uid, containers] : j["entries"].items()) {
      if (!containers.is_object()) return absl::DataLossError(where + "checkpoint is corrupted");
      for (const auto& [name, set] : containers.items()) {
        auto cs = ParseCPUSet(set.is_string() ? set.get<std::string>() : "");
        if (!cs.ok()) return absl::DataLossError(where + std::string(cs.status().message()));
        for (int id : *cs) {
          if (seen.count(id)) return absl::DataLossError(where + "CPU " + std::to_string(id) + " assigned twice");
          seen.insert(id);
        }
        entries[uid][name] = *cs;
      }
    }
  if (seen != all_)
    return absl::FailedPreconditionError(where + "current set of available CPUs \"" + FormatCPUSet(all_) +
                                         "\" doesn't match with CPUs in state \"" + FormatCPUSet(seen) + "\"");
  default_ = *def;
  assignments_ = std::move(entries);
  return absl::OkStatus();
}

absl::Status CPUManager::Checkpoint() const {
  if (o_.state_file.empty()) return absl::OkStatus();
  json body = {{"policyName", o_.policy}, {"defaultCpuSet", FormatCPUSet(default_)}};
  if (!assignments_.empty()) {
    json entries = json::object();
    for (const auto& [uid, containers] : assignments_)
      for (const auto& [name, set] : containers) entries[uid][name] = FormatCPUSet(set);
    body["entries"] = entries;
  }
  body["checksum"] = Fnv32a(DumpJSON(body));
  std::string tmp = o_.state_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << DumpJSON(body);
    if (!out) return absl::InternalError("failed to write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, o_.state_file, ec);
  if (ec) return absl::InternalError("failed to write " + o_.state_file + ": " + ec.message());
  return absl::OkStatus();
}

namespace {

// The containers that may get CPUs of their own: sidecars and app containers (init containers run on the shared pool).
std::vector<const api::Container*> ExclusiveCandidates(const api::Pod& pod) {
  std::vector<const api::Container*> out;
  for (const auto& c : pod.spec.init_containers)
    if (api::IsRestartableInitContainer(c)) out.push_back(&c);
  for (const auto& c : pod.spec.containers) out.push_back(&c);
  return out;
}

bool MayHaveExclusiveCPUs(const api::Pod& pod, const api::Container& c) {
  for (const auto* x : ExclusiveCandidates(pod))
    if (x->name == c.name) return true;
  return false;
}

}  // namespace

std::vector<int> CPUManager::AssignableLocked() const {
  std::vector<int> out;
  for (const auto& info : cpus_)
    if (default_.count(info.id) && !reserved_.count(info.id)) out.push_back(info.id);
  return out;
}

absl::Status CPUManager::AllocateLocked(const api::Pod& pod, const api::Container& c, int n) {
  std::vector<int> available = AssignableLocked();
  if (static_cast<int>(available.size()) < n)
    return absl::ResourceExhaustedError("not enough cpus available to satisfy request: requested=" + std::to_string(n) +
                                        ", available=" + std::to_string(available.size()));
  CPUSet got;
  // The NUMA nodes of the container's topology affinity first, then whatever is left.
  const TopologyHint affinity = d_.affinity ? d_.affinity->GetAffinity(pod.metadata.uid, c.name) : TopologyHint{};
  if (affinity.affinity)
    for (int id : available)
      if (static_cast<int>(got.size()) < n && affinity.affinity->IsSet(numa_of_[id])) got.insert(id);
  for (int id : available)
    if (static_cast<int>(got.size()) < n) got.insert(id);
  assignments_[pod.metadata.uid][c.name] = got;
  for (int id : got) default_.erase(id);
  log_->info("CPU manager: exclusive CPUs assigned pod=\"{}/{}\" containerName=\"{}\" cpuset=\"{}\"", pod.metadata.namespace_,
             pod.metadata.name, c.name, FormatCPUSet(got));
  return absl::OkStatus();
}

absl::Status CPUManager::Allocate(const api::Pod& pod) {
  if (o_.policy != "static") return absl::OkStatus();
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> assigned;
  for (const api::Container* c : ExclusiveCandidates(pod)) {
    int n = GuaranteedCPUs(pod, *c);
    if (n == 0) continue;
    auto existing = assignments_.find(pod.metadata.uid);
    if (existing != assignments_.end() && existing->second.count(c->name)) continue;  // already has its CPUs
    if (auto st = AllocateLocked(pod, *c, n); !st.ok()) {
      // All or nothing: what this call took goes back.
      for (const auto& name : assigned) {
        auto& set = assignments_[pod.metadata.uid][name];
        default_.insert(set.begin(), set.end());
        assignments_[pod.metadata.uid].erase(name);
      }
      if (assignments_[pod.metadata.uid].empty()) assignments_.erase(pod.metadata.uid);
      return st;
    }
    assigned.push_back(c->name);
  }
  return assigned.empty() ? absl::OkStatus() : Checkpoint();
}

absl::Status CPUManager::Allocate(const api::Pod& pod, const api::Container& c) {
  if (o_.policy != "static" || !MayHaveExclusiveCPUs(pod, c)) return absl::OkStatus();
  int n = GuaranteedCPUs(pod, c);
  if (n == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> l(mu_);
  auto existing = assignments_.find(pod.metadata.uid);
  if (existing != assignments_.end() && existing->second.count(c.name)) return absl::OkStatus();
  if (auto st = AllocateLocked(pod, c, n); !st.ok()) return st;
  return Checkpoint();
}

void CPUManager::RemovePod(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = assignments_.find(uid);
  if (it == assignments_.end()) return;
  for (const auto& [name, set] : it->second) default_.insert(set.begin(), set.end());
  assignments_.erase(it);
  if (auto st = Checkpoint(); !st.ok()) log_->error("CPU manager: checkpoint failed err=\"{}\"", st.message());
}

// Upstream's generateCPUTopologyHints: every NUMA node set with enough free CPUs, preferred when as small as the
// request allows on this machine.
std::vector<TopologyHint> CPUManager::GenerateHintsLocked(const std::vector<int>& available, int request) const {
  int min_size = static_cast<int>(numa_nodes_.size());
  std::vector<TopologyHint> hints;
  IterateBitMasks(numa_nodes_, [&](const BitMask& mask) {
    int in_mask = 0;
    for (const auto& c : cpus_) in_mask += mask.IsSet(c.numa) ? 1 : 0;
    if (in_mask >= request && mask.Count() < min_size) min_size = mask.Count();
    int matching = 0;
    for (int id : available) {
      auto n = numa_of_.find(id);
      matching += n != numa_of_.end() && mask.IsSet(n->second) ? 1 : 0;
    }
    if (matching < request) return;
    hints.push_back(TopologyHint{mask, false});
  });
  for (auto& h : hints) h.preferred = h.affinity->Count() == min_size;
  return hints;
}

TopologyHints CPUManager::GetTopologyHints(const api::Pod& pod, const api::Container& c) {
  if (o_.policy != "static" || !MayHaveExclusiveCPUs(pod, c)) return {};
  int n = GuaranteedCPUs(pod, c);
  if (n == 0) return {};  // no preference
  std::lock_guard<std::mutex> l(mu_);
  if (auto p = assignments_.find(pod.metadata.uid); p != assignments_.end())
    if (auto a = p->second.find(c.name); a != p->second.end()) {
      if (static_cast<int>(a->second.size()) != n) {
        log_->info("CPUs already allocated to container with different number than request pod=\"{}/{}\" containerName=\"{}\" "
                   "requestedSize={} allocatedSize={}", pod.metadata.namespace_, pod.metadata.name, c.name, n, a->second.size());
        return {{"cpu", std::vector<TopologyHint>{}}};
      }
      KLOG_V(log_, 3)("Regenerating TopologyHints for CPUs already allocated pod=\"{}/{}\" containerName=\"{}\"", pod.metadata.namespace_,
                      pod.metadata.name, c.name);
      return {{"cpu", GenerateHintsLocked({a->second.begin(), a->second.end()}, n)}};
    }
  return {{"cpu", GenerateHintsLocked(AssignableLocked(), n)}};
}

TopologyHints CPUManager::GetPodTopologyHints(const api::Pod& pod) {
  if (o_.policy != "static") return {};
  int n = 0;
  for (const api::Container* c : ExclusiveCandidates(pod)) n += GuaranteedCPUs(pod, *c);
  if (n == 0) return {};
  std::lock_guard<std::mutex> l(mu_);
  if (auto p = assignments_.find(pod.metadata.uid); p != assignments_.end() && !p->second.empty()) {
    std::vector<int> held;
    for (const auto& [name, set] : p->second) held.insert(held.end(), set.begin(), set.end());
    if (static_cast<int>(held.size()) != n) return {{"cpu", std::vector<TopologyHint>{}}};
    return {{"cpu", GenerateHintsLocked(held, n)}};
  }
  return {{"cpu", GenerateHintsLocked(AssignableLocked(), n)}};
}

std::string CPUManager::ContainerCPUSet(const std::string& pod_uid, const std::string& container) const {
  if (o_.policy != "static") return "";
  std::lock_guard<std::mutex> l(mu_);
  auto p = assignments_.find(pod_uid);
  if (p != assignments_.end()) {
    auto c = p->second.find(container);
    if (c != p->second.end()) return FormatCPUSet(c->second);
  }
  return FormatCPUSet(default_);
}

CPUSet CPUManager::DefaultSet() const {
  std::lock_guard<std::mutex> l(mu_);
  return default_;
}

std::map<std::string, std::map<std::string, CPUSet>> CPUManager::Assignments() const {
  std::lock_guard<std::mutex> l(mu_);
  return assignments_;
}

absl::Status CPUManager::ReconcileOnce() {
  if (o_.policy != "static") return absl::OkStatus();
  std::vector<api::Pod> pods = d_.active_pods ? d_.active_pods() : std::vector<api::Pod>{};
  std::set<std::string> active;
  for (const auto& p : pods) active.insert(p.metadata.uid);
  // CPUs of pods that are gone or finished return to the shared pool.
  if (!d_.sources_ready || d_.sources_ready()) {
    std::lock_guard<std::mutex> l(mu_);
    bool changed = false;
    for (auto it = assignments_.begin(); it != assignments_.end();) {
      if (active.count(it->first)) {
        ++it;
        continue;
      }
      for (const auto& [name, set] : it->second) {
        default_.insert(set.begin(), set.end());
        log_->info("CPU manager: released exclusive CPUs podUID=\"{}\" containerName=\"{}\" cpuset=\"{}\"", it->first, name,
                   FormatCPUSet(set));
      }
      it = assignments_.erase(it);
      changed = true;
    }
    if (changed)
      if (auto st = Checkpoint(); !st.ok()) log_->error("CPU manager: checkpoint failed err=\"{}\"", st.message());
  }
  // Push each running container's cpuset when it differs from what it last got.
  rt::ContainerFilter f;
  f.mutable_state()->set_state(rt::CONTAINER_RUNNING);
  auto running = d_.runtime->ListContainers(&f);
  if (!running.ok()) return running.status();
  std::map<std::string, std::string> applied;
  absl::Status first;
  for (const auto& c : *running) {
    auto uid = c.labels().find("io.kubernetes.pod.uid");
    if (uid == c.labels().end() || !active.count(uid->second)) continue;
    std::string want = ContainerCPUSet(uid->second, c.metadata().name());
    std::string had;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (auto a = applied_.find(c.id()); a != applied_.end()) had = a->second;
    }
    if (want == had) {
      applied[c.id()] = had;
      continue;
    }
    rt::LinuxContainerResources r;
    r.set_cpuset_cpus(want);
    if (auto st = d_.runtime->UpdateContainerResources(c.id(), r); !st.ok()) {
      log_->error("CPU manager: failed to update container cpuset containerID=\"{}\" cpuset=\"{}\" err=\"{}\"", c.id(), want,
                  st.message());
      if (first.ok()) first = st;
      continue;
    }
    KLOG_V(log_, 2)("CPU manager: updated container cpuset containerID=\"{}\" cpuset=\"{}\"", c.id(), want);
    applied[c.id()] = want;
  }
  std::lock_guard<std::mutex> l(mu_);
  applied_ = std::move(applied);  // only containers running now are remembered
  return first;
}

void CPUManager::Start() {
  if (o_.policy != "static") return;
  thread_ = std::thread([this] { GuardedRun("cpu_manager Loop", [this] { Loop(); }); });
}

void CPUManager::Stop() {
  {
    std::lock_guard<std::mutex> l(loop_mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CPUManager::Loop() {
  std::unique_lock<std::mutex> l(loop_mu_);
  while (!stop_) {
    if (cv_.wait_for(l, o_.reconcile_period, [this] { return stop_; })) break;
    l.unlock();
    if (auto st = ReconcileOnce(); !st.ok()) log_->error("CPU manager: reconcile failed err=\"{}\"", st.message());
    l.lock();
  }
}

}  // namespace kubelet::cm
