#include "kubelet/pleg/pleg.h"

#include <set>

#include "kubelet/metrics/metrics.h"
#include "kubelet/util/logging.h"

namespace kubelet::pleg {

using kuberuntime::ContainerState;

const char* EventTypeName(EventType t) {
  switch (t) {
    case EventType::kContainerStarted: return "ContainerStarted";
    case EventType::kContainerDied: return "ContainerDied";
    case EventType::kContainerRemoved: return "ContainerRemoved";
    default: return "ContainerChanged";
  }
}

PLEG::PLEG(kuberuntime::RuntimeManager* runtime, metrics::KubeletMetrics* metrics, Duration period, Sink sink)
    : runtime_(runtime), metrics_(metrics), period_(period), sink_(std::move(sink)), log_(log::Get("pleg")),
      last_relist_(std::chrono::steady_clock::now()) {}

PLEG::~PLEG() { Stop(); }

void PLEG::Start() {
  thread_ = std::thread([this] {
    while (true) {
      Relist();
      std::unique_lock<std::mutex> l(mu_);
      if (cv_.wait_for(l, period_, [&] { return stop_; })) return;
    }
  });
}

void PLEG::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool PLEG::Relist() {
  auto start = std::chrono::steady_clock::now();
  if (metrics_ && last_start_.time_since_epoch().count() != 0)
    metrics_->pleg_relist_interval.Observe(std::chrono::duration<double>(start - last_start_).count());
  last_start_ = start;
  auto pods = runtime_->GetPods(true);
  if (!pods.ok()) {
    log_->error("GenericPLEG: Unable to retrieve pods err=\"{}\"", pods.status().message());
    return false;
  }
  std::map<std::string, std::pair<std::string, ContainerState>> now;
  for (const auto& p : *pods) {
    // Sandboxes count as containers here, as upstream: a dead sandbox is an event for its pod.
    for (const auto& s : p.sandboxes)
      now[s.id] = {p.uid, s.ready ? ContainerState::kRunning : ContainerState::kExited};
    for (const auto& c : p.containers) now[c.id] = {p.uid, c.state};
  }
  std::vector<PodLifecycleEvent> events;
  {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [id, v] : now) {
    auto it = last_.find(id);
    ContainerState old = it == last_.end() ? ContainerState::kUnknown : it->second.second;
    bool known = it != last_.end();
    if (known && old == v.second) continue;
    switch (v.second) {
      case ContainerState::kRunning: events.push_back({v.first, EventType::kContainerStarted, id}); break;
      case ContainerState::kExited: events.push_back({v.first, EventType::kContainerDied, id}); break;
      default: events.push_back({v.first, EventType::kContainerChanged, id}); break;
    }
  }
  for (const auto& [id, v] : last_)
    if (!now.count(id)) events.push_back({v.first, EventType::kContainerRemoved, id});
  last_ = std::move(now);
  pods_ = std::move(*pods);
  last_relist_ = std::chrono::steady_clock::now();
  relisted_ = true;
  relisted_cv_.notify_all();
  if (metrics_) {
    metrics_->pleg_relist_duration.Observe(std::chrono::duration<double>(last_relist_ - start).count());
    metrics_->pleg_last_seen.Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  }
  // Outside the lock: the sink takes the sync loop's lock.
  if (!events.empty()) sink_(std::move(events));
  return true;
}

bool PLEG::Healthy(std::string* why) const {
  std::lock_guard<std::mutex> l(mu_);
  auto since = std::chrono::steady_clock::now() - last_relist_;
  if (since > std::chrono::minutes(3)) {
    if (why) *why = "pleg was last seen active " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(since).count()) + "s ago; threshold is 3m0s";
    return false;
  }
  return true;
}

bool PLEG::WaitForFirstRelist(Duration timeout) const {
  std::unique_lock<std::mutex> l(mu_);
  return relisted_cv_.wait_for(l, timeout, [&] { return relisted_.load(); });
}

std::vector<kuberuntime::RuntimePod> PLEG::LastPods() const {
  std::lock_guard<std::mutex> l(mu_);
  return pods_;
}

}  // namespace kubelet::pleg
