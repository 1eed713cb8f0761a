#include "kubelet/eviction/eviction_manager.h"
#include "kubelet/util/guard.h"

#include <algorithm>
#include <cmath>

#include "kubelet/api/quantity.h"
#include "kubelet/api/types.h"
#include "kubelet/cm/container_manager.h"
#include "kubelet/config/kubelet_config.h"

namespace kubelet::eviction {

namespace {

using json = nlohmann::json;

const std::set<std::string>& Signals() {
  static const std::set<std::string> k = {"memory.available",   "nodefs.available",      "nodefs.inodesFree",
                                          "imagefs.available",  "imagefs.inodesFree",    "containerfs.available",
                                          "containerfs.inodesFree", "allocatableMemory.available", "pid.available"};
  return k;
}

bool IsMemory(const std::string& s) { return s == "memory.available" || s == "allocatableMemory.available"; }
bool IsInodes(const std::string& s) { return s.size() > 10 && s.substr(s.size() - 10) == "inodesFree"; }
bool IsDisk(const std::string& s) { return !IsMemory(s) && s != "pid.available"; }

// The resource a signal starves, as upstream names it in messages.
std::string ResourceOf(const std::string& s) {
  if (IsMemory(s)) return "memory";
  if (s == "pid.available") return "pids";
  if (IsInodes(s)) return "inodes";
  return "ephemeral-storage";
}

std::string FormatDecimalSI(int64_t v) {
  if (v == 0) return "0";
  static const char* kSuffix[] = {"", "k", "M", "G", "T", "P", "E"};
  int i = 0;
  while (i < 6 && v % 1000 == 0) {
    v /= 1000;
    ++i;
  }
  return std::to_string(v) + kSuffix[i];
}

std::string FormatFor(const std::string& signal, int64_t v) {
  return IsInodes(signal) || signal == "pid.available" ? FormatDecimalSI(v) : api::FormatBinarySI(v);
}

// "10%" or a quantity; an error names the signal.
absl::Status ParseValue(const std::string& signal, const std::string& text, std::optional<int64_t>* quantity, double* pct) {
  if (!text.empty() && text.back() == '%') {
    char* end = nullptr;
    double p = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() - 1 || p < 0 || p > 100)
      return absl::InvalidArgumentError("eviction percentage threshold " + signal + " must be >= 0% and <= 100%: " + text);
    *pct = p / 100.0;
    return absl::OkStatus();
  }
  auto q = api::ParseQuantity(text);
  if (!q.ok()) return absl::InvalidArgumentError("invalid eviction threshold " + signal + ": " + text);
  if (q->value < 0) return absl::InvalidArgumentError("eviction threshold " + signal + " cannot be negative: " + text);
  *quantity = q->Value();
  return absl::OkStatus();
}

int64_t Priority(const api::Pod& p) { return p.spec.priority.value_or(0); }

int64_t Quantity(const api::StringMap& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  auto q = api::ParseQuantity(it->second);
  return q.ok() ? q->Value() : 0;
}

// Requests of the pod for a resource, containers summed (init containers as the larger, as upstream);
// requests default to limits as the API server defaults them.
int64_t PodRequest(const api::Pod& p, const char* resource) {
  if (std::string(resource) == "memory") return cm::ComputePodResources(p).memory_request;
  int64_t sum = 0, init = 0;
  for (const auto& c : p.spec.containers) sum += Quantity(c.resources.requests, resource);
  for (const auto& c : p.spec.init_containers) init = std::max(init, Quantity(c.resources.requests, resource));
  return std::max(sum, init);
}

std::string Key(const Threshold& t) { return t.signal + (t.hard ? "/hard" : "/soft"); }

}  // namespace

absl::StatusOr<std::vector<Threshold>> ParseThresholds(const std::map<std::string, std::string>& hard,
                                                       const std::map<std::string, std::string>& soft,
                                                       const std::map<std::string, std::string>& soft_grace,
                                                       const std::map<std::string, std::string>& min_reclaim) {
  std::vector<Threshold> out;
  auto add = [&](const std::map<std::string, std::string>& m, bool is_hard) -> absl::Status {
    for (const auto& [signal, text] : m) {
      if (!Signals().count(signal)) return absl::InvalidArgumentError("unsupported eviction signal " + signal);
      Threshold t;
      t.signal = signal;
      t.hard = is_hard;
      t.text = text;
      if (auto st = ParseValue(signal, text, &t.quantity, &t.percentage); !st.ok()) return st;
      if (!is_hard) {
        auto g = soft_grace.find(signal);
        if (g == soft_grace.end()) return absl::InvalidArgumentError("no grace period specified for soft eviction threshold " + signal);
        auto d = config::ParseGoDuration(g->second);
        if (!d.ok() || *d < Duration::zero())
          return absl::InvalidArgumentError("invalid grace period for soft eviction threshold " + signal + ": " + g->second);
        t.grace_period = *d;
      }
      if (auto r = min_reclaim.find(signal); r != min_reclaim.end())
        if (auto st = ParseValue(signal, r->second, &t.min_reclaim_quantity, &t.min_reclaim_percentage); !st.ok()) return st;
      // A zero threshold is no threshold (upstream drops "0%" and "0").
      if ((t.quantity && *t.quantity == 0) || (!t.quantity && t.percentage == 0)) continue;
      out.push_back(t);
    }
    return absl::OkStatus();
  };
  if (auto st = add(hard, true); !st.ok()) return st;
  if (auto st = add(soft, false); !st.ok()) return st;
  for (const auto& [signal, _] : soft_grace)
    if (!soft.count(signal)) return absl::InvalidArgumentError("grace period specified for a signal without a soft threshold: " + signal);
  return out;
}

void AddAllocatableThresholds(std::vector<Threshold>* thresholds) {
  std::vector<Threshold> add;
  for (const auto& t : *thresholds)
    if (t.hard && t.signal == "memory.available") {
      Threshold a = t;
      a.signal = "allocatableMemory.available";
      add.push_back(a);
    }
  thresholds->insert(thresholds->end(), add.begin(), add.end());
}

Observations Observe(const stats::Summary& s, int64_t allocatable_memory) {
  Observations o;
  const auto& n = s.node;
  if (allocatable_memory > 0 && n.pods_memory) {
    int64_t ws = static_cast<int64_t>(n.pods_memory->working_set_bytes);
    o["allocatableMemory.available"] = {std::max<int64_t>(0, allocatable_memory - ws), allocatable_memory, n.pods_memory->time};
  }
  if (n.memory.available_bytes) {
    int64_t avail = static_cast<int64_t>(*n.memory.available_bytes);
    o["memory.available"] = {avail, avail + static_cast<int64_t>(n.memory.working_set_bytes), n.memory.time};
  }
  if (n.fs.capacity_bytes > 0) {
    o["nodefs.available"] = {static_cast<int64_t>(n.fs.available_bytes), static_cast<int64_t>(n.fs.capacity_bytes), n.fs.time};
    o["nodefs.inodesFree"] = {static_cast<int64_t>(n.fs.inodes_free), static_cast<int64_t>(n.fs.inodes), n.fs.time};
  }
  if (n.image_fs && n.image_fs->capacity_bytes > 0) {
    const auto& f = *n.image_fs;
    for (const char* prefix : {"imagefs", "containerfs"}) {
      o[std::string(prefix) + ".available"] = {static_cast<int64_t>(f.available_bytes), static_cast<int64_t>(f.capacity_bytes), f.time};
      o[std::string(prefix) + ".inodesFree"] = {static_cast<int64_t>(f.inodes_free), static_cast<int64_t>(f.inodes), f.time};
    }
  }
  if (n.max_pid > 0)
    o["pid.available"] = {static_cast<int64_t>(n.max_pid) - static_cast<int64_t>(n.cur_proc), static_cast<int64_t>(n.max_pid),
                          n.cpu.time};
  return o;
}

int64_t ThresholdValue(const Threshold& t, int64_t capacity) {
  if (t.quantity) return *t.quantity;
  return static_cast<int64_t>(static_cast<double>(capacity) * t.percentage);
}

std::string ConditionFor(const std::string& signal) {
  if (IsMemory(signal)) return "MemoryPressure";
  if (signal == "pid.available") return "PIDPressure";
  return "DiskPressure";
}

bool IsCriticalPod(const api::Pod& pod) {
  if (api::IsStaticPod(pod)) return true;
  if (pod.metadata.annotations.count("kubernetes.io/config.mirror")) return true;
  return Priority(pod) >= 2000000000;
}

std::vector<const api::Pod*> RankForEviction(const std::string& signal, const std::vector<const api::Pod*>& pods,
                                             const stats::Summary& s) {
  std::map<std::string, const stats::PodStats*> by_uid;
  for (const auto& p : s.pods) by_uid[p.uid] = &p;
  struct Row {
    const api::Pod* pod;
    bool has_stats;
    int64_t usage;
    int64_t request;
    int64_t priority;
  };
  std::vector<Row> rows;
  for (const api::Pod* p : pods) {
    Row r{p, false, 0, 0, Priority(*p)};
    auto it = by_uid.find(p->metadata.uid);
    if (it != by_uid.end()) {
      r.has_stats = true;
      const auto& ps = *it->second;
      if (IsMemory(signal)) {
        r.usage = static_cast<int64_t>(ps.memory.working_set_bytes);
        r.request = PodRequest(*p, "memory");
      } else if (signal == "pid.available") {
        r.usage = static_cast<int64_t>(ps.process_count);
      } else if (IsInodes(signal)) {
        for (const auto& c : ps.containers)
          if (c.rootfs) r.usage += static_cast<int64_t>(c.rootfs->inodes_used);
      } else {
        r.usage = static_cast<int64_t>(ps.ephemeral_used_bytes);
        r.request = PodRequest(*p, "ephemeral-storage");
      }
    }
    rows.push_back(r);
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    if (signal == "pid.available") {
      if (a.priority != b.priority) return a.priority < b.priority;
      return a.usage > b.usage;
    }
    // Pods without stats first; then those using more than they requested; then lower priority; then the larger excess.
    if (a.has_stats != b.has_stats) return !a.has_stats;
    bool ea = a.usage > a.request, eb = b.usage > b.request;
    if (ea != eb) return ea;
    if (a.priority != b.priority) return a.priority < b.priority;
    return (a.usage - a.request) > (b.usage - b.request);
  });
  std::vector<const api::Pod*> out;
  for (const auto& r : rows) out.push_back(r.pod);
  return out;
}

std::string EvictionMessage(const std::string& signal, const api::Pod& pod, const stats::Summary& s, const Threshold& t,
                            const Observation& o) {
  std::string resource = ResourceOf(signal);
  std::string msg = "The node was low on resource: " + resource + ". ";
  msg += "Threshold quantity: " + FormatFor(signal, ThresholdValue(t, o.capacity)) + ", available: " +
         FormatFor(signal, o.available) + ". ";
  if (resource != "memory" && resource != "ephemeral-storage") return msg;
  for (const auto& ps : s.pods) {
    if (ps.uid != pod.metadata.uid) continue;
    for (const auto& cs : ps.containers)
      for (const auto& c : pod.spec.containers) {
        if (c.name != cs.name) continue;
        int64_t usage = 0;
        if (resource == "memory") {
          usage = static_cast<int64_t>(cs.memory.working_set_bytes);
        } else if (cs.rootfs) {
          usage = static_cast<int64_t>(cs.rootfs->used_bytes);
        }
        auto req = c.resources.requests.find(resource);
        int64_t request = req == c.resources.requests.end() ? 0 : Quantity(c.resources.requests, resource.c_str());
        std::string req_text = req == c.resources.requests.end() ? "0" : req->second;
        if (usage > request)
          msg += "Container " + c.name + " was using " + api::FormatBinarySI(usage) + ", request is " + req_text +
                 ", has larger consumption of " + resource + ". ";
      }
  }
  return msg;
}

std::optional<std::pair<const api::Pod*, std::string>> LocalStorageViolation(const std::vector<const api::Pod*>& pods,
                                                                             const stats::Summary& s) {
  std::map<std::string, const stats::PodStats*> by_uid;
  for (const auto& p : s.pods) by_uid[p.uid] = &p;
  for (const api::Pod* pod : pods) {
    if (IsCriticalPod(*pod)) continue;
    auto it = by_uid.find(pod->metadata.uid);
    if (it == by_uid.end()) continue;
    const stats::PodStats& ps = *it->second;
    auto used_by = [&](const std::string& volume) -> int64_t {
      auto u = ps.volume_used_bytes.find(volume);
      return u == ps.volume_used_bytes.end() ? 0 : static_cast<int64_t>(u->second);
    };
    // emptyDir over its sizeLimit.
    int64_t local_volumes = 0;
    for (const auto& v : pod->spec.volumes) {
      if (!v.empty_dir) continue;
      if (v.empty_dir->medium != "Memory") local_volumes += used_by(v.name);
      if (v.empty_dir->size_limit.empty()) continue;
      auto limit = api::ParseQuantity(v.empty_dir->size_limit);
      if (limit.ok() && limit->Value() > 0 && used_by(v.name) > limit->Value())
        return std::make_pair(pod, "Usage of EmptyDir volume \"" + v.name + "\" exceeds the limit \"" + v.empty_dir->size_limit + "\". ");
    }
    // The pod over the sum of its containers' limits.
    std::map<std::string, int64_t> container_used;
    int64_t total = local_volumes;
    for (const auto& cs : ps.containers) {
      int64_t used = static_cast<int64_t>((cs.rootfs ? cs.rootfs->used_bytes : 0) + cs.logs_used_bytes);
      container_used[cs.name] = used;
      total += used;
    }
    int64_t pod_limit = 0;
    bool declared = false;
    for (const auto& c : pod->spec.containers)
      if (c.resources.limits.count("ephemeral-storage")) {
        declared = true;
        pod_limit += Quantity(c.resources.limits, "ephemeral-storage");
      }
    if (declared && total > pod_limit)
      return std::make_pair(pod, "Pod ephemeral local storage usage exceeds the total limit of containers " +
                                     api::FormatBinarySI(pod_limit) + ". ");
    // A container over its own limit.
    for (const auto& c : pod->spec.containers) {
      auto lim = c.resources.limits.find("ephemeral-storage");
      if (lim == c.resources.limits.end()) continue;
      if (container_used[c.name] > Quantity(c.resources.limits, "ephemeral-storage"))
        return std::make_pair(pod, "Container " + c.name + " exceeded its local ephemeral storage limit \"" + lim->second + "\". ");
    }
  }
  return std::nullopt;
}

EvictionManager::EvictionManager(EvictionDeps deps, EvictionOptions o)
    : d_(std::move(deps)), o_(std::move(o)), log_(log::Get("eviction_manager")) {}

EvictionManager::~EvictionManager() { Stop(); }

void EvictionManager::Start() {
  if (o_.thresholds.empty() && !o_.local_storage_capacity_isolation) return;
  thread_ = std::thread([this] { GuardedRun("eviction_manager Loop", [this] { Loop(); }); });
}

void EvictionManager::Stop() {
  {
    std::lock_guard<std::mutex> l(loop_mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EvictionManager::Loop() {
  std::unique_lock<std::mutex> l(loop_mu_);
  while (!stop_) {
    l.unlock();
    Synchronize();
    l.lock();
    cv_.wait_for(l, o_.monitoring_period, [this] { return stop_; });
  }
}

std::vector<std::string> EvictionManager::NodeConditions() const {
  std::lock_guard<std::mutex> l(mu_);
  return conditions_;
}

bool EvictionManager::Has(const std::string& condition) const {
  std::lock_guard<std::mutex> l(mu_);
  return std::find(conditions_.begin(), conditions_.end(), condition) != conditions_.end();
}

AdmitResult EvictionManager::Admit(const api::Pod& pod) const {
  auto conds = NodeConditions();
  if (conds.empty() || IsCriticalPod(pod)) return {};
  if (conds.size() == 1 && conds[0] == "MemoryPressure") {
    if (api::QOSClass(pod) != "BestEffort") return {};
    // A BestEffort pod that tolerates the memory-pressure taint is admitted.
    for (const auto& t : pod.spec.tolerations) {
      const std::string op = t.op.empty() ? "Equal" : t.op;
      if (!t.effect.empty() && t.effect != "NoSchedule") continue;
      if (op == "Exists" && (t.key.empty() || t.key == "node.kubernetes.io/memory-pressure")) return {};
      if (op == "Equal" && t.key == "node.kubernetes.io/memory-pressure" && t.value.empty()) return {};
    }
  }
  std::string list;
  for (const auto& c : conds) list += (list.empty() ? "" : " ") + c;
  return {false, kReason, "The node had condition: [" + list + "]. "};
}

std::optional<std::string> EvictionManager::Synchronize() {
  auto summary = d_.summary();
  if (!summary.ok()) {
    log_->error("Eviction manager: failed to get summary stats err=\"{}\"", summary.status().message());
    return std::nullopt;
  }
  Observations obs = Observe(**summary, o_.allocatable_memory);
  TimePoint now = d_.clock->Now();
  std::vector<Threshold> met;
  std::vector<std::string> old_conditions;
  {
    std::lock_guard<std::mutex> l(mu_);
    old_conditions = conditions_;
    for (const auto& t : o_.thresholds) {
      auto it = obs.find(t.signal);
      if (it == obs.end()) continue;
      int64_t value = ThresholdValue(t, it->second.capacity);
      // Once crossed, a threshold holds until the signal is back above it by the minimum reclaim.
      int64_t extra = 0;
      if (unresolved_.count(Key(t)))
        extra = t.min_reclaim_quantity ? *t.min_reclaim_quantity
                                       : static_cast<int64_t>(static_cast<double>(it->second.capacity) * t.min_reclaim_percentage);
      if (it->second.available < value + extra) met.push_back(t);
    }
    std::map<std::string, TimePoint> first;
    unresolved_.clear();
    for (const auto& t : met) {
      auto f = first_observed_.find(Key(t));
      first[Key(t)] = f == first_observed_.end() ? now : f->second;
      unresolved_.insert(Key(t));
      condition_last_seen_[ConditionFor(t.signal)] = now;
    }
    first_observed_ = std::move(first);
    conditions_.clear();
    for (const char* c : {"MemoryPressure", "DiskPressure", "PIDPressure"}) {
      auto it = condition_last_seen_.find(c);
      if (it != condition_last_seen_.end() && now - it->second < o_.pressure_transition_period) conditions_.push_back(c);
    }
    if (conditions_ != old_conditions) {
      std::string list;
      for (const auto& c : conditions_) list += (list.empty() ? "" : ",") + c;
      log_->info("Eviction manager: node conditions now [{}]", list);
    }
  }
  // Ephemeral storage limits come first, as upstream: a pod over its own limits goes at once (grace 0).
  if (o_.local_storage_capacity_isolation && d_.active_pods && d_.evict_pod) {
    std::vector<api::Pod> pods = d_.active_pods();
    std::vector<const api::Pod*> ptrs;
    for (const auto& p : pods) ptrs.push_back(&p);
    if (auto v = LocalStorageViolation(ptrs, **summary)) {
      const api::Pod& p = *v->first;
      if (d_.evict_pod(p, 0, v->second)) {
        log_->info("Eviction manager: pod is evicted for its local storage use pod=\"{}/{}\" message=\"{}\"", p.metadata.namespace_,
                   p.metadata.name, v->second);
        return p.metadata.uid;
      }
    }
  }
  // Soft thresholds act only once crossed for their grace period.
  std::vector<Threshold> actionable;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& t : met)
      if (t.hard || now - first_observed_[Key(t)] >= t.grace_period) actionable.push_back(t);
  }
  if (actionable.empty()) return std::nullopt;
  // Memory first, as upstream orders the starved resources.
  std::stable_sort(actionable.begin(), actionable.end(),
                   [](const Threshold& a, const Threshold& b) { return IsMemory(a.signal) && !IsMemory(b.signal); });
  const Threshold t = actionable.front();
  Observation o = obs[t.signal];
  log_->warn("Eviction manager: attempting to reclaim resourceName=\"{}\" signal=\"{}\" available={} threshold={}", ResourceOf(t.signal),
             t.signal, FormatFor(t.signal, o.available), FormatFor(t.signal, ThresholdValue(t, o.capacity)));

  // Disk: dead containers and unused images go before any pod.
  if (IsDisk(t.signal) && (d_.delete_unused_containers || d_.delete_unused_images)) {
    if (d_.delete_unused_containers)
      if (auto st = d_.delete_unused_containers(); !st.ok())
        log_->error("Eviction manager: failed to delete unused containers err=\"{}\"", st.message());
    if (d_.delete_unused_images)
      if (auto st = d_.delete_unused_images(); !st.ok())
        log_->error("Eviction manager: failed to delete unused images err=\"{}\"", st.message());
    auto again = d_.summary();
    if (again.ok()) {
      summary = again;
      Observations after = Observe(**again, o_.allocatable_memory);
      auto it = after.find(t.signal);
      int64_t min_reclaim = t.min_reclaim_quantity ? *t.min_reclaim_quantity
                                                   : static_cast<int64_t>(static_cast<double>(o.capacity) * t.min_reclaim_percentage);
      if (it != after.end() && it->second.available >= ThresholdValue(t, it->second.capacity) + min_reclaim) {
        log_->info("Eviction manager: able to reduce resource pressure without evicting pods resourceName=\"{}\"", ResourceOf(t.signal));
        return std::nullopt;
      }
      if (it != after.end()) o = it->second;
    }
  }

  std::vector<api::Pod> pods = d_.active_pods ? d_.active_pods() : std::vector<api::Pod>{};
  std::vector<const api::Pod*> ptrs;
  for (const auto& p : pods) ptrs.push_back(&p);
  if (ptrs.empty()) {
    log_->error("Eviction manager: eviction thresholds have been met, but no pods are active to evict");
    return std::nullopt;
  }
  for (const api::Pod* p : RankForEviction(t.signal, ptrs, **summary)) {
    if (IsCriticalPod(*p)) {
      log_->error("Eviction manager: cannot evict a critical pod pod=\"{}/{}\"", p->metadata.namespace_, p->metadata.name);
      continue;
    }
    int64_t grace = 1;  // hard thresholds: immediately, as upstream
    if (!t.hard) {
      grace = p->spec.termination_grace_period_seconds;
      if (o_.max_pod_grace_period_seconds > 0) grace = std::min(grace, o_.max_pod_grace_period_seconds);
    }
    std::string message = EvictionMessage(t.signal, *p, **summary, t, o);
    if (!d_.evict_pod || !d_.evict_pod(*p, grace, message)) continue;
    log_->info("Eviction manager: pod is evicted successfully pod=\"{}/{}\" signal=\"{}\"", p->metadata.namespace_,
               p->metadata.name, t.signal);
    if (d_.on_eviction) d_.on_eviction(t.signal);
    // Wait (bounded) for the pod to be gone so the next round sees what its eviction freed.
    auto deadline = std::chrono::steady_clock::now() + o_.pod_cleanup_timeout;
    std::unique_lock<std::mutex> l(loop_mu_);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      l.unlock();
      bool done = !d_.pod_cleaned_up || d_.pod_cleaned_up(p->metadata.uid);
      l.lock();
      if (done) break;
      cv_.wait_for(l, std::chrono::seconds(1), [this] { return stop_; });
    }
    return p->metadata.uid;
  }
  log_->error("Eviction manager: unable to evict any pods from the node");
  return std::nullopt;
}

}  // namespace kubelet::eviction
