#include "kubelet/cm/topologymanager.h"

#include <algorithm>
#include <bitset>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace kubelet::cm {

namespace fs = std::filesystem;

// ---- BitMask ----

absl::StatusOr<BitMask> BitMask::Of(const std::vector<int>& nodes) {
  uint64_t bits = 0;
  for (int n : nodes) {
    if (n < 0 || n >= 64) return absl::InvalidArgumentError("bit number must be in range 0-63");
    bits |= uint64_t{1} << n;
  }
  return BitMask(bits);
}

int BitMask::Count() const { return static_cast<int>(std::bitset<64>(bits_).count()); }

bool BitMask::AnySet(const std::vector<int64_t>& nodes) const {
  for (int64_t n : nodes)
    if (n >= 0 && n < 64 && IsSet(static_cast<int>(n))) return true;
  return false;
}

bool BitMask::IsNarrowerThan(const BitMask& other) const {
  int a = Count(), b = other.Count();
  if (a == b) return IsLessThan(other);
  return a < b;
}

std::vector<int> BitMask::Bits() const {
  std::vector<int> out;
  for (int i = 0; i < 64; ++i)
    if (IsSet(i)) out.push_back(i);
  return out;
}

std::string BitMask::String() const {
  // Padded to an even width: the narrowest that holds the highest bit (upstream's grouping of two).
  int width = 2;
  for (int shift = 62; shift > 0; shift -= 2)
    if (bits_ > (uint64_t{1} << shift)) {
      width = shift + 2;
      break;
    }
  std::string s;
  for (uint64_t v = bits_; v; v >>= 1) s.insert(s.begin(), (v & 1) ? '1' : '0');
  if (s.empty()) s = "0";
  if (static_cast<int>(s.size()) < width) s.insert(s.begin(), width - s.size(), '0');
  return s;
}

void IterateBitMasks(const std::vector<int>& nodes, const std::function<void(const BitMask&)>& fn) {
  const size_t n = nodes.size();
  std::vector<size_t> idx;
  for (size_t size = 1; size <= n; ++size) {
    // Combinations of `size` positions in lexicographic order.
    idx.resize(size);
    for (size_t i = 0; i < size; ++i) idx[i] = i;
    while (true) {
      uint64_t bits = 0;
      for (size_t i : idx)
        if (nodes[i] >= 0 && nodes[i] < 64) bits |= uint64_t{1} << nodes[i];
      fn(BitMask(bits));
      size_t k = size;
      while (k > 0 && idx[k - 1] == n - size + (k - 1)) --k;
      if (k == 0) break;
      ++idx[k - 1];
      for (size_t j = k; j < size; ++j) idx[j] = idx[j - 1] + 1;
    }
  }
}

std::string TopologyHint::String() const {
  return "{" + (affinity ? affinity->String() : std::string("<nil>")) + " " + (preferred ? "true" : "false") + "}";
}

// ---- NUMAInfo ----

BitMask NUMAInfo::DefaultAffinityMask() const {
  uint64_t bits = 0;
  for (int n : nodes)
    if (n >= 0 && n < 64) bits |= uint64_t{1} << n;
  return BitMask(bits);
}

BitMask NUMAInfo::Narrowest(const BitMask& a, const BitMask& b) const { return a.IsNarrowerThan(b) ? a : b; }

double NUMAInfo::AverageDistance(const BitMask& m) const {
  if (m.Count() == 0) return 0;
  double sum = 0, count = 0;
  auto bits = m.Bits();
  for (int x : bits)
    for (int y : bits) {
      auto row = distances.find(x);
      if (row != distances.end() && y >= 0 && static_cast<size_t>(y) < row->second.size()) sum += static_cast<double>(row->second[y]);
      ++count;
    }
  return sum / count;
}

BitMask NUMAInfo::Closest(const BitMask& a, const BitMask& b) const {
  if (a.Count() != b.Count()) return Narrowest(a, b);
  double da = AverageDistance(a), db = AverageDistance(b);
  if (da == db) return a.IsLessThan(b) ? a : b;
  return da < db ? a : b;
}

NUMAInfo DiscoverNUMA(const std::string& sysfs_node) {
  NUMAInfo info;
  std::error_code ec;
  for (fs::directory_iterator it(sysfs_node, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() < 5 || name.compare(0, 4, "node") != 0) continue;
    std::string digits = name.substr(4);
    if (digits.size() > 4 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    int id = std::stoi(digits);
    info.nodes.push_back(id);
    std::ifstream in(it->path() / "distance");
    std::vector<uint64_t> row;
    for (uint64_t d; in >> d && row.size() < 1024;) row.push_back(d);
    if (!row.empty()) info.distances[id] = std::move(row);
  }
  std::sort(info.nodes.begin(), info.nodes.end());
  if (info.nodes.empty()) info.nodes.push_back(0);
  return info;
}

// ---- options ----

namespace {

std::optional<bool> ParseGoBool(const std::string& s) {
  if (s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "false" || s == "FALSE" || s == "False") return false;
  return std::nullopt;
}

}  // namespace

absl::StatusOr<TopologyPolicyOptions> ParseTopologyPolicyOptions(const std::map<std::string, std::string>& options) {
  TopologyPolicyOptions out;
  for (const auto& [name, value] : options) {
    if (name == "prefer-closest-numa-nodes") {
      auto b = ParseGoBool(value);
      if (!b)
        return absl::InvalidArgumentError("bad value for option \"" + name + "\": strconv.ParseBool: parsing \"" + value +
                                          "\": invalid syntax");
      out.prefer_closest_numa = *b;
    } else if (name == "max-allowable-numa-nodes") {
      int v = 0;
      size_t used = 0;
      try {
        v = std::stoi(value, &used);
      } catch (...) {
        used = std::string::npos;
      }
      if (used != value.size() || value.empty())
        return absl::InvalidArgumentError("unable to convert policy option to integer \"" + name + "\": strconv.Atoi: parsing \"" + value +
                                          "\": invalid syntax");
      if (v < kDefaultMaxAllowableNUMANodes)
        return absl::InvalidArgumentError("the minimum value of \"" + name + "\" should not be less than " +
                                          std::to_string(kDefaultMaxAllowableNUMANodes));
      out.max_allowable_numa_nodes = v;
    } else {
      return absl::InvalidArgumentError("unknown Topology Manager Policy option: \"" + name + "\"");
    }
  }
  return out;
}

// ---- merge ----

namespace {

using HintLists = std::vector<std::vector<TopologyHint>>;

// One list per provider and resource; "no preference" and "cannot be placed" become a single any-node hint.
HintLists FilterProvidersHints(const std::vector<TopologyHints>& providers) {
  HintLists out;
  for (const auto& hints : providers) {
    if (hints.empty()) {
      out.push_back({TopologyHint{std::nullopt, true}});
      continue;
    }
    for (const auto& [resource, list] : hints) {
      if (!list) {
        out.push_back({TopologyHint{std::nullopt, true}});
      } else if (list->empty()) {
        out.push_back({TopologyHint{std::nullopt, false}});
      } else {
        out.push_back(*list);
      }
    }
  }
  return out;
}

HintLists FilterSingleNumaHints(const HintLists& all) {
  HintLists out;
  for (const auto& list : all) {
    std::vector<TopologyHint> kept;
    for (const auto& h : list)
      if (h.preferred && (!h.affinity || h.affinity->Count() == 1)) kept.push_back(h);
    out.push_back(std::move(kept));
  }
  return out;
}

TopologyHint MergePermutation(const BitMask& def, const std::vector<const TopologyHint*>& perm) {
  bool preferred = true;
  BitMask merged = def;
  std::optional<BitMask> first;
  for (const TopologyHint* h : perm) {
    if (h->affinity) {
      if (!first) first = *h->affinity;
      else if (*h->affinity != *first) preferred = false;  // preferred only when every mask is the same
      merged = merged.And(*h->affinity);
    }
    if (!h->preferred) preferred = false;
  }
  return TopologyHint{merged, preferred};
}

class HintMerger {
 public:
  HintMerger(const NUMAInfo& numa, const HintLists& hints, bool closest) : numa_(numa), hints_(hints), closest_(closest) {
    // The widest of the narrowest masks each provider can do with: the target size among non-preferred hints.
    for (const auto& list : hints_) {
      const TopologyHint* narrowest = nullptr;
      for (const auto& h : list) {
        if (!h.affinity) continue;
        if (!narrowest || h.affinity->IsNarrowerThan(*narrowest->affinity)) narrowest = &h;
      }
      if (narrowest) best_non_preferred_count_ = std::max(best_non_preferred_count_, narrowest->affinity->Count());
    }
  }

  TopologyHint Merge() {
    const BitMask def = numa_.DefaultAffinityMask();
    std::optional<TopologyHint> best;
    std::vector<const TopologyHint*> perm;
    Iterate(0, &perm, [&](const std::vector<const TopologyHint*>& p) {
      TopologyHint candidate = MergePermutation(def, p);
      if (Compare(best ? &*best : nullptr, candidate)) best = candidate;
    });
    if (!best) return TopologyHint{def, false};
    return *best;
  }

 private:
  void Iterate(size_t i, std::vector<const TopologyHint*>* perm, const std::function<void(const std::vector<const TopologyHint*>&)>& fn) {
    if (i == hints_.size()) {
      fn(*perm);
      return;
    }
    for (const auto& h : hints_[i]) {
      perm->push_back(&h);
      Iterate(i + 1, perm, fn);
      perm->pop_back();
    }
  }

  // True when the candidate's mask should replace the current one among hints of the same preference.
  bool FitterMask(const TopologyHint& current, const TopologyHint& candidate) const {
    if (*candidate.affinity == *current.affinity) return false;
    BitMask best = closest_ ? numa_.Closest(*current.affinity, *candidate.affinity) : numa_.Narrowest(*current.affinity, *candidate.affinity);
    return best != *current.affinity;
  }

  // True when the candidate becomes the best hint (upstream's HintMerger.compare).
  bool Compare(const TopologyHint* current, const TopologyHint& candidate) const {
    if (candidate.affinity->Count() == 0) return false;
    if (!current) return true;
    if (!current->preferred && candidate.preferred) return true;
    if (current->preferred && !candidate.preferred) return false;
    if (current->preferred && candidate.preferred) return FitterMask(*current, candidate);
    // Both non-preferred: as close as possible to (not above) the target size.
    const int cur = current->affinity->Count(), cand = candidate.affinity->Count(), target = best_non_preferred_count_;
    if (cur > target) return FitterMask(*current, candidate);
    if (cur == target) return cand == target && FitterMask(*current, candidate);
    if (cand > target) return false;
    if (cand == target) return true;
    if (cand > cur) return true;
    if (cand < cur) return false;
    return FitterMask(*current, candidate);
  }

  const NUMAInfo& numa_;
  const HintLists& hints_;
  bool closest_;
  int best_non_preferred_count_ = 0;
};

}  // namespace

std::pair<TopologyHint, bool> MergeTopologyHints(const std::string& policy, const NUMAInfo& numa, const TopologyPolicyOptions& opts,
                                                 const std::vector<TopologyHints>& providers) {
  if (policy == kTopologyPolicyNone) return {TopologyHint{}, true};
  HintLists filtered = FilterProvidersHints(providers);
  if (policy == kTopologyPolicySingleNumaNode) {
    HintLists single = FilterSingleNumaHints(filtered);
    TopologyHint best = HintMerger(numa, single, false).Merge();
    if (best.affinity && *best.affinity == numa.DefaultAffinityMask()) best.affinity.reset();
    return {best, best.preferred};
  }
  TopologyHint best = HintMerger(numa, filtered, opts.prefer_closest_numa).Merge();
  if (policy == kTopologyPolicyRestricted) return {best, best.preferred};
  return {best, true};  // best-effort
}

// ---- the manager ----

TopologyAdmitResult UnexpectedAdmissionError(const absl::Status& st) {
  return TopologyAdmitResult{false, "UnexpectedAdmissionError", "Allocate failed due to " + std::string(st.message()) + ", which is unexpected"};
}

TopologyManager::TopologyManager(NUMAInfo numa, TopologyManagerOptions o, TopologyPolicyOptions po)
    : numa_(std::move(numa)), o_(std::move(o)), po_(po), log_(log::Get("topologymanager")) {}

absl::StatusOr<std::unique_ptr<TopologyManager>> TopologyManager::New(NUMAInfo numa, TopologyManagerOptions o) {
  if (o.policy != kTopologyPolicyNone && o.policy != kTopologyPolicyBestEffort && o.policy != kTopologyPolicyRestricted &&
      o.policy != kTopologyPolicySingleNumaNode)
    return absl::InvalidArgumentError("unknown policy: \"" + o.policy + "\"");
  if (o.scope != kTopologyScopeContainer && o.scope != kTopologyScopePod)
    return absl::InvalidArgumentError("unknown scope: \"" + o.scope + "\"");
  auto po = ParseTopologyPolicyOptions(o.policy_options);
  if (!po.ok()) return po.status();
  if (o.policy != kTopologyPolicyNone && static_cast<int>(numa.nodes.size()) > po->max_allowable_numa_nodes)
    return absl::FailedPreconditionError("unsupported on machines with more than " + std::to_string(po->max_allowable_numa_nodes) +
                                         " NUMA Nodes");
  if (o.policy != kTopologyPolicyNone && o.policy != kTopologyPolicySingleNumaNode && po->prefer_closest_numa)
    for (int n : numa.nodes)
      if (numa.distances[n].size() < numa.nodes.size())
        return absl::FailedPreconditionError("error getting NUMA distances of node " + std::to_string(n) + " from sysfs");
  for (int n : numa.nodes)
    if (n < 0 || n >= 64) return absl::InvalidArgumentError("NUMA node " + std::to_string(n) + " out of range 0-63");
  std::unique_ptr<TopologyManager> m(new TopologyManager(std::move(numa), std::move(o), *po));
  std::string nodes;
  for (int n : m->numa_.nodes) nodes += (nodes.empty() ? "" : ",") + std::to_string(n);
  m->log_->info("Creating topology manager with {} policy policy=\"{}\" scope=\"{}\" numaNodes=\"{}\"", m->o_.policy, m->o_.policy,
                m->o_.scope, nodes);
  return m;
}

void TopologyManager::AddHintProvider(HintProvider* p) { providers_.push_back(p); }

TopologyHint TopologyManager::GetAffinity(const std::string& pod_uid, const std::string& container) const {
  std::lock_guard<std::mutex> l(mu_);
  auto p = hints_.find(pod_uid);
  if (p == hints_.end()) return {};
  auto c = p->second.find(container);
  return c == p->second.end() ? TopologyHint{} : c->second;
}

void TopologyManager::SetAffinity(const std::string& uid, const std::string& container, const TopologyHint& h) {
  std::lock_guard<std::mutex> l(mu_);
  hints_[uid][container] = h;
}

void TopologyManager::RemovePod(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  hints_.erase(uid);
}

void TopologyManager::Prune(const std::set<std::string>& active) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = hints_.begin(); it != hints_.end();) it = active.count(it->first) ? std::next(it) : hints_.erase(it);
}

void TopologyManager::MaybePrune() {
  if (!o_.active_pods) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (hints_.size() < prune_at_) return;
  }
  Prune(o_.active_pods());
  std::lock_guard<std::mutex> l(mu_);
  prune_at_ = std::max<size_t>(64, 2 * hints_.size());  // amortized: the active list is read once per doubling
}

size_t TopologyManager::PodsTracked() const {
  std::lock_guard<std::mutex> l(mu_);
  return hints_.size();
}

std::pair<TopologyHint, bool> TopologyManager::Calculate(const api::Pod& pod, const api::Container* c) {
  std::vector<TopologyHints> all;
  for (HintProvider* p : providers_) {
    all.push_back(c ? p->GetTopologyHints(pod, *c) : p->GetPodTopologyHints(pod));
    if (log::Verbosity() >= 5) {
      std::string text;
      for (const auto& [res, list] : all.back()) {
        text += (text.empty() ? "" : " ") + res + ":[";
        if (list)
          for (size_t i = 0; i < list->size(); ++i) text += (i ? " " : "") + (*list)[i].String();
        text += list ? "]" : "<nil>]";
      }
      KLOG_V(log_, 5)("TopologyHints pod=\"{}/{}\" containerName=\"{}\" hints=\"map[{}]\"", pod.metadata.namespace_, pod.metadata.name,
                      c ? c->name : "", text);
    }
  }
  return MergeTopologyHints(o_.policy, numa_, po_, all);
}

TopologyAdmitResult TopologyManager::AllocateAll(const api::Pod& pod, const api::Container& c) {
  for (HintProvider* p : providers_)
    if (auto st = p->Allocate(pod, c); !st.ok()) return UnexpectedAdmissionError(st);
  return {};
}

TopologyAdmitResult TopologyManager::Admit(const api::Pod& pod) {
  if (o_.on_request) o_.on_request();
  MaybePrune();
  const auto start = std::chrono::steady_clock::now();
  auto done = [&](TopologyAdmitResult r) {
    if (!r.admit && o_.on_error) o_.on_error();
    if (o_.on_duration)
      o_.on_duration(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (!r.admit) RemovePod(pod.metadata.uid);
    return r;
  };
  std::vector<const api::Container*> containers;
  for (const auto& c : pod.spec.init_containers) containers.push_back(&c);
  for (const auto& c : pod.spec.containers) containers.push_back(&c);
  const TopologyAdmitResult reject{false, kTopologyAffinityError, kTopologyAffinityErrorMessage};

  if (o_.policy == kTopologyPolicyNone) {
    for (const api::Container* c : containers)
      if (auto r = AllocateAll(pod, *c); !r.admit) return done(r);
    return done({});
  }
  if (o_.scope == kTopologyScopePod) {
    auto [best, admit] = Calculate(pod, nullptr);
    KLOG_V(log_, 4)("Best TopologyHint bestHint=\"{}\" pod=\"{}/{}\"", best.String(), pod.metadata.namespace_, pod.metadata.name);
    if (!admit) return done(reject);
    for (const api::Container* c : containers) {
      SetAffinity(pod.metadata.uid, c->name, best);
      if (auto r = AllocateAll(pod, *c); !r.admit) return done(r);
    }
    return done({});
  }
  for (const api::Container* c : containers) {
    auto [best, admit] = Calculate(pod, c);
    KLOG_V(log_, 4)("Best TopologyHint bestHint=\"{}\" pod=\"{}/{}\" containerName=\"{}\"", best.String(), pod.metadata.namespace_,
                    pod.metadata.name, c->name);
    if (!admit) return done(reject);
    SetAffinity(pod.metadata.uid, c->name, best);
    if (auto r = AllocateAll(pod, *c); !r.admit) return done(r);
  }
  return done({});
}

}  // namespace kubelet::cm
