#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"

namespace kubelet::config {

PodConfig::PodConfig(const Clock* clock, Handler handler) : clock_(clock), handler_(std::move(handler)) {}

void PodConfig::AddSource(const std::string& source) {
  std::lock_guard<std::mutex> l(mu_);
  sources_.insert(source);
}

bool PodConfig::AllSourcesSeen() const {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& s : sources_)
    if (!seen_.count(s)) return false;
  return true;
}

void PodConfig::OnSnapshot(const std::string& source, std::vector<api::Pod> pods) {
  std::lock_guard<std::mutex> order(order_mu_);
  std::vector<PodChange> changes;
  {
    std::lock_guard<std::mutex> l(mu_);
    seen_.insert(source);
    auto& current = pods_[source];
    std::map<std::string, api::Pod> next;
    for (auto& p : pods) {
      std::string uid = p.metadata.uid;
      auto it = current.find(uid);
      if (it == current.end()) {
        std::string seen = FormatRFC3339(clock_->Now());
        p.metadata.annotations[api::kConfigSeenAnnotation] = seen;
        p.metadata.creation_timestamp = clock_->Now();
        changes.push_back({PodOp::kAdd, p});
      } else {
        // Keep the first-seen time; report an update only when the object changed.
        p.metadata.annotations[api::kConfigSeenAnnotation] = it->second.metadata.annotations[api::kConfigSeenAnnotation];
        p.metadata.creation_timestamp = it->second.metadata.creation_timestamp;
        if (api::CanonicalJson(p.raw) != api::CanonicalJson(it->second.raw)) changes.push_back({PodOp::kUpdate, p});
      }
      next.emplace(uid, std::move(p));
    }
    // Removals go first: a replaced static pod's old instance is marked
    // terminating before its successor is seen.
    std::vector<PodChange> removes;
    for (auto& [uid, p] : current)
      if (!next.count(uid)) removes.push_back({PodOp::kRemove, p});
    changes.insert(changes.begin(), std::make_move_iterator(removes.begin()), std::make_move_iterator(removes.end()));
    current = std::move(next);
  }
  // Always notify: the first, possibly empty, snapshot is what marks a source ready.
  handler_(std::move(changes));
}

}  // namespace kubelet::config
