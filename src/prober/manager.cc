#include <algorithm>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include "kubelet/prober/prober.h"
#include "kubelet/util/guard.h"

namespace kubelet::prober {

using SteadyTime = std::chrono::steady_clock::time_point;

struct ProbeManager::Worker {
  uint64_t id = 0;
  std::string uid;
  std::shared_ptr<const api::Pod> pod;
  std::string container;
  ProbeType type = ProbeType::kLiveness;
  api::Probe spec;
  std::vector<api::ContainerPort> ports;
  // The container instance being probed and the run of equal results on it.
  std::string container_id;
  bool probed_current = false;
  bool on_hold = false;  // liveness/startup failed: wait for the container to be replaced
  std::optional<bool> last;
  int run = 0;
  bool busy = false;
  bool stopped = false;
  SteadyTime due;
  prometheus::Counter* successful = nullptr;
  prometheus::Counter* failed = nullptr;
  prometheus::Counter* unknown = nullptr;
  prometheus::Histogram* duration = nullptr;
};

ProbeManager::ProbeManager(Deps deps, Options options)
    : d_(std::move(deps)),
      o_(options),
      prober_(d_.exec),
      log_(log::Get("prober")),
      registry_(std::make_shared<prometheus::Registry>()),
      probe_total_(prometheus::BuildCounter()
                       .Name("prober_probe_total")
                       .Help("[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.")
                       .Register(*registry_)),
      probe_duration_(prometheus::BuildHistogram()
                          .Name("prober_probe_duration_seconds")
                          .Help("[ALPHA] Duration in seconds for a probe response.")
                          .Register(*registry_)) {}

ProbeManager::~ProbeManager() { Stop(); }

void ProbeManager::Start() {
  std::lock_guard<std::mutex> l(mu_);
  stop_ = false;
  scheduler_ = std::thread([this] { GuardedRun("manager SchedulerLoop", [this] { SchedulerLoop(); }); });
  for (size_t i = 0; i < std::max<size_t>(1, o_.executors); ++i) SpawnExecutor();
}

void ProbeManager::SpawnExecutor() {
  ++executors_;
  ++idle_;  // idle from now: the scheduler spawns one thread per due probe that no idle thread will take
  // Detached: Stop() waits for executors_ to reach zero.
  std::thread([this] { GuardedRun("prober executor", [this] { ExecutorLoop(); }); }).detach();
}

size_t ProbeManager::ExecutorCount() const {
  std::lock_guard<std::mutex> l(mu_);
  return executors_;
}

void ProbeManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  std::unique_lock<std::mutex> l(mu_);
  executors_cv_.wait(l, [&] { return executors_ == 0; });
}

void ProbeManager::AddPod(const api::Pod& pod) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string& uid = pod.metadata.uid;
  if (by_pod_.count(uid)) return;
  auto shared = std::make_shared<const api::Pod>(pod);
  auto add = [&](const api::Container& c, ProbeType type, const std::optional<api::Probe>& probe) {
    if (!probe) return;
    auto w = std::make_shared<Worker>();
    w->id = next_id_++;
    w->uid = uid;
    w->pod = shared;
    w->container = c.name;
    w->type = type;
    w->spec = *probe;
    w->ports = c.ports;
    std::map<std::string, std::string> labels = {{"probe_type", ProbeTypeName(type)}, {"container", c.name},
                                                 {"pod", pod.metadata.name}, {"namespace", pod.metadata.namespace_},
                                                 {"pod_uid", uid}};
    auto with = [&](const char* result) {
      auto l2 = labels;
      l2["result"] = result;
      return &probe_total_.Add(l2);
    };
    w->successful = with("successful");
    w->failed = with("failed");
    w->unknown = with("unknown");
    auto dl = labels;
    dl.erase("pod_uid");
    w->duration = &probe_duration_.Add(dl, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
    w->due = std::chrono::steady_clock::now();
    due_.emplace(w->due, w->id);
    by_pod_[uid].push_back(w->id);
    workers_[w->id] = std::move(w);
  };
  // Sidecars (restartable init containers) are probed like main containers.
  for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
    for (const auto& c : *list) {
      if (list == &pod.spec.init_containers && !api::IsRestartableInitContainer(c)) continue;
      add(c, ProbeType::kStartup, c.startup_probe);
      add(c, ProbeType::kLiveness, c.liveness_probe);
      add(c, ProbeType::kReadiness, c.readiness_probe);
    }
  if (!by_pod_.count(uid)) by_pod_[uid] = {};  // remembered: AddPod stays idempotent for probe-less pods
  cv_.notify_all();
}

void ProbeManager::RemovePod(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_pod_.find(uid);
  if (it == by_pod_.end()) return;
  for (uint64_t id : it->second) {
    auto w = workers_.find(id);
    if (w == workers_.end()) continue;
    w->second->stopped = true;
    // A busy worker's probe is running on an executor, which owns its fields until it is done and cleans up then.
    if (w->second->busy) continue;
    if (!w->second->container_id.empty()) results_[static_cast<int>(w->second->type)].erase(w->second->container_id);
    due_.erase({w->second->due, id});
    {
      for (auto* c : {w->second->successful, w->second->failed, w->second->unknown}) probe_total_.Remove(c);
      probe_duration_.Remove(w->second->duration);
      workers_.erase(w);
    }
  }
  by_pod_.erase(it);
}

void ProbeManager::CleanupPods(const std::set<std::string>& keep) {
  std::vector<std::string> drop;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [uid, _] : by_pod_)
      if (!keep.count(uid)) drop.push_back(uid);
  }
  for (const auto& uid : drop) RemovePod(uid);
}

void ProbeManager::Poke(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_pod_.find(uid);
  if (it == by_pod_.end()) return;
  auto now = std::chrono::steady_clock::now();
  bool any = false;
  for (uint64_t id : it->second) {
    auto w = workers_.find(id);
    if (w == workers_.end() || w->second->busy || w->second->probed_current || w->second->due <= now) continue;
    due_.erase({w->second->due, id});
    w->second->due = now;
    due_.emplace(now, id);
    any = true;
  }
  if (any) cv_.notify_all();
}

size_t ProbeManager::WorkerCount() const {
  std::lock_guard<std::mutex> l(mu_);
  return workers_.size();
}

std::optional<bool> ProbeManager::Get(ProbeType t, const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  const auto& m = results_[static_cast<int>(t)];
  auto it = m.find(id);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

std::optional<bool> ProbeManager::Liveness(const std::string& id) const { return Get(ProbeType::kLiveness, id); }
std::optional<bool> ProbeManager::Readiness(const std::string& id) const { return Get(ProbeType::kReadiness, id); }
std::optional<bool> ProbeManager::Startup(const std::string& id) const { return Get(ProbeType::kStartup, id); }

void ProbeManager::Publish(ProbeType t, const std::string& id, std::optional<bool> value, const std::string& uid) {
  bool changed = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto& m = results_[static_cast<int>(t)];
    auto it = m.find(id);
    std::optional<bool> old = it == m.end() ? std::nullopt : std::optional<bool>(it->second);
    changed = old != value;
    if (value) {
      m[id] = *value;
    } else if (it != m.end()) {
      m.erase(it);
    }
  }
  if (changed && d_.on_change) d_.on_change(uid);
}

void ProbeManager::SchedulerLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    bool moved = false;
    while (!due_.empty() && due_.begin()->first <= now) {
      ready_.push_back(due_.begin()->second);
      due_.erase(due_.begin());
      moved = true;
    }
    if (moved) {
      // Every thread busy (probes that hang until their deadline, say): more threads, so nothing due waits.
      while (idle_ < ready_.size() && executors_ < std::max(o_.max_executors, o_.executors)) {
        SpawnExecutor();
      }
      cv_.notify_all();
    }
    if (due_.empty()) {
      cv_.wait_for(l, std::chrono::seconds(1));
    } else {
      // A copy: the set's node may be erased while this thread waits without the lock.
      const auto next = due_.begin()->first;
      cv_.wait_until(l, next);
    }
  }
}

void ProbeManager::ExecutorLoop() {
  std::unique_lock<std::mutex> l(mu_);
  bool counted_idle = true;  // SpawnExecutor counted this thread idle
  while (true) {
    if (!counted_idle) ++idle_;
    counted_idle = false;
    bool work = cv_.wait_for(l, o_.idle_timeout, [&] { return stop_ || !ready_.empty(); });
    --idle_;
    if (stop_) break;
    if (!work) {
      if (executors_ > o_.executors) break;  // an extra thread with nothing to do
      continue;
    }
    uint64_t id = ready_.front();
    ready_.erase(ready_.begin());
    auto it = workers_.find(id);
    if (it == workers_.end() || it->second->stopped) continue;
    std::shared_ptr<Worker> w = it->second;
    w->busy = true;
    SteadyTime started = std::chrono::steady_clock::now();
    w->due = started + std::chrono::seconds(std::max(1, w->spec.period_seconds));
    l.unlock();
    bool keep = true;
    GuardedRun("probe of pod " + w->uid, [&] { keep = DoProbe(*w); });
    l.lock();
    w->busy = false;
    if (!keep || w->stopped) {
      if (!w->container_id.empty()) results_[static_cast<int>(w->type)].erase(w->container_id);
      for (auto* c : {w->successful, w->failed, w->unknown}) probe_total_.Remove(c);
      probe_duration_.Remove(w->duration);
      workers_.erase(id);
      if (auto pod = by_pod_.find(w->uid); pod != by_pod_.end()) {  // gone already when RemovePod stopped it
        auto& ids = pod->second;
        ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
      }
      continue;
    }
    due_.emplace(w->due, id);
    cv_.notify_all();
  }
  --executors_;
  executors_cv_.notify_all();
}

bool ProbeManager::DoProbe(Worker& w) {
  std::optional<PodView> view = d_.pod_view ? d_.pod_view(w.uid) : std::nullopt;
  if (!view) return true;  // no status yet
  if (view->phase == "Succeeded" || view->phase == "Failed") return false;  // the pod is done: stop probing
  auto cit = view->containers.find(w.container);
  if (cit == view->containers.end() || cit->second.container_id.empty()) return true;  // not created yet
  const ContainerView& c = cit->second;
  if (w.container_id != c.container_id) {
    // A new instance: forget the old one's result and start from the initial value.
    if (!w.container_id.empty()) Publish(w.type, w.container_id, std::nullopt, w.uid);
    w.container_id = c.container_id;
    w.on_hold = false;
    w.last.reset();
    w.run = 0;
    w.probed_current = false;
    if (w.type == ProbeType::kReadiness) Publish(w.type, w.container_id, false, w.uid);
    if (w.type == ProbeType::kLiveness) Publish(w.type, w.container_id, true, w.uid);
  }
  if (w.on_hold) return true;
  if (!c.running) {
    if (w.type != ProbeType::kStartup) Publish(w.type, w.container_id, false, w.uid);
    // With restartPolicy Never a terminated container never comes back: stop.
    return !c.terminated || w.pod->spec.restart_policy != "Never";
  }
  if (view->deleting && w.type != ProbeType::kReadiness) {
    // Graceful deletion: liveness and startup stop failing the container.
    Publish(w.type, w.container_id, true, w.uid);
    return false;
  }
  if (w.type != ProbeType::kStartup && !c.started) return true;  // startup probe first
  if (w.type == ProbeType::kStartup && c.started) return true;   // done with startup
  auto since_start = d_.clock ? d_.clock->Now() - c.started_at : Duration::zero();
  auto delay = std::chrono::seconds(w.spec.initial_delay_seconds);
  if (delay.count() > 0 && since_start < delay) {
    // Wait out initialDelaySeconds, then probe right away.
    auto left = std::chrono::duration_cast<std::chrono::steady_clock::duration>(delay - since_start);
    w.due = std::min(w.due, std::chrono::steady_clock::now() + left);
    return true;
  }

  ProbeTarget target{w.container_id, view->pod_ip, w.ports};
  auto t0 = std::chrono::steady_clock::now();
  auto r = prober_.Run(w.spec.handler, target, std::chrono::seconds(std::max(1, w.spec.timeout_seconds)));
  w.duration->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  w.probed_current = true;
  if (!r.ok()) {
    // A prober problem, not the container's: the result is thrown away, as upstream.
    w.unknown->Increment();
    KLOG_V(log_, 1)("Probe errored probeType=\"{}\" pod=\"{}/{}\" containerName=\"{}\" err=\"{}\"", ProbeTypeName(w.type),
                    w.pod->metadata.namespace_, w.pod->metadata.name, w.container, r.status().message());
    return true;
  }
  bool success = r->outcome == Outcome::kSuccess || r->outcome == Outcome::kWarning;
  if (r->outcome == Outcome::kUnknown) {
    w.unknown->Increment();
    return true;
  }
  (success ? w.successful : w.failed)->Increment();
  if (r->outcome == Outcome::kWarning && d_.recorder)
    d_.recorder->PodEvent(*w.pod, events::kWarning, "ProbeWarning", std::string(ProbeTypeName(w.type)) + " probe warning: " + r->output);
  if (!success) {
    KLOG_V(log_, 1)("Probe failed probeType=\"{}\" pod=\"{}/{}\" containerName=\"{}\" probeResult=\"failure\" output=\"{}\"",
                    ProbeTypeName(w.type), w.pod->metadata.namespace_, w.pod->metadata.name, w.container, r->output);
    if (d_.recorder)
      d_.recorder->PodEvent(*w.pod, events::kWarning, "Unhealthy", std::string(ProbeTypeName(w.type)) + " probe failed: " + r->output);
  }
  if (w.last == success) {
    ++w.run;
  } else {
    w.last = success;
    w.run = 1;
  }
  if ((!success && w.run < w.spec.failure_threshold) || (success && w.run < w.spec.success_threshold)) return true;
  Publish(w.type, w.container_id, success, w.uid);
  if (!success && w.type != ProbeType::kReadiness) {
    // The container will be killed: hold until a new instance replaces it.
    w.on_hold = true;
    w.run = 0;
  }
  return true;
}

}  // namespace kubelet::prober
