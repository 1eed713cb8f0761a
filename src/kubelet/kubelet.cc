#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kubelet/preemption.h"
#include "kubelet/util/guard.h"

#include <algorithm>
#include <filesystem>

#include "kubelet/api/codec.h"
#include "kubelet/api/quantity.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/eviction/eviction_manager.h"
#include "kubelet/util/logging.h"

namespace kubelet {
namespace {

// Upstream's plegChannelCapacity: PLEG events beyond it are dropped (a later relist catches up).
constexpr size_t kPLEGQueueCapacity = 1000;
// Source updates are never dropped; producers wait when this many are queued.
constexpr size_t kConfigQueueCapacity = 4096;

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string PodDesc(const api::Pod& pod) { return pod.metadata.namespace_ + "/" + pod.metadata.name; }

// The pod's effective requests (milli-CPU, memory bytes): the sum over its
// containers, or the largest init container when that is more, as the scheduler counts.

// The pod's phase in the API object when it is Failed or Succeeded; "" otherwise (and for static pods).
std::string TerminalPhaseInAPI(const api::Pod& pod) {
  if (api::IsStaticPod(pod) || !pod.raw.is_object()) return "";
  auto st = pod.raw.find("status");
  if (st == pod.raw.end() || !st->is_object()) return "";
  std::string phase = st->value("phase", "");
  return phase == "Failed" || phase == "Succeeded" ? phase : "";
}

}  // namespace

Kubelet::Kubelet(KubeletOptions options, Dependencies deps)
    : o_(std::move(options)),
      d_(deps),
      log_(log::Get("kubelet")),
      backoff_(o_.container_backoff_initial, o_.container_backoff_max, deps.clock) {
  admit_node_ = {o_.node_name, o_.node_labels, o_.config.max_pods, o_.allocatable_milli_cpu, o_.allocatable_memory,
                 o_.config.allowed_unsafe_sysctls, o_.allow_privileged};
  pod_config_ = std::make_unique<config::PodConfig>(d_.clock, [this](std::vector<config::PodChange> changes) {
    LoopEvent ev;
    ev.kind = LoopEvent::kConfig;
    ev.changes = std::move(changes);
    ev.sources_seen = pod_config_->AllSourcesSeen();  // consistent: PodConfig orders snapshots with their handler calls
    Push(std::move(ev), false);
  });
  PodWorkers::Callbacks cb;
  cb.sync_pod = [this](const api::Pod& pod, UpdateType type) { return SyncPod(pod, type); };
  cb.sync_terminating = [this](const std::string& uid, const api::Pod* pod, std::optional<int64_t> grace) {
    return SyncTerminatingPod(uid, pod, grace);
  };
  cb.sync_terminated = [this](const std::string& uid, const api::Pod* pod) { return SyncTerminatedPod(uid, pod); };
  workers_ = std::make_unique<PodWorkers>(cb, o_.config.sync_frequency, o_.worker_backoff);
  pleg_ = std::make_unique<pleg::PLEG>(d_.runtime, d_.metrics, o_.pleg_period, [this](std::vector<pleg::PodLifecycleEvent> evs) {
    LoopEvent ev;
    ev.kind = LoopEvent::kPLEG;
    ev.pleg = std::move(evs);
    Push(std::move(ev), true);
  });
  prober::ProbeManager::Deps pd;
  // An exec probe is given up a second after its timeoutSeconds, when the runtime has not ended the command itself:
  // a hung runtime call holds one prober thread for that long, never for the runtime request timeout.
  pd.exec = [this](const std::string& id, const std::vector<std::string>& cmd, Duration timeout) {
    return d_.runtime->ExecSync(id, cmd, timeout, timeout + std::chrono::seconds(1));
  };
  pd.recorder = d_.recorder;
  pd.clock = d_.clock;
  pd.pod_view = [this](const std::string& uid) { return ProbeView(uid); };
  pd.on_change = [this](const std::string& uid) {
    std::optional<api::Pod> pod;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it != pods_.end()) pod = it->second;
    }
    if (pod) workers_->UpdatePod(UpdateType::kSync, uid, pod);
  };
  probes_ = std::make_unique<prober::ProbeManager>(std::move(pd));
  if (d_.metrics) d_.metrics->node_name.Add({{"node", o_.node_name}}).Set(1);
}

std::optional<prober::PodView> Kubelet::ProbeView(const std::string& uid) const {
  std::optional<api::PodStatus> st = status_.GetPodStatus(uid);
  if (!st) return std::nullopt;
  prober::PodView v;
  v.phase = st->phase;
  v.pod_ip = st->pod_ip;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = pods_.find(uid);
    v.deleting = it == pods_.end() || it->second.metadata.deletion_timestamp.has_value();
  }
  for (const auto* list : {&st->init_container_statuses, &st->container_statuses})
    for (const auto& c : *list) {
      prober::ContainerView cv;
      size_t sep = c.container_id.find("://");
      cv.container_id = sep == std::string::npos ? c.container_id : c.container_id.substr(sep + 3);
      cv.running = c.state.running.has_value();
      cv.terminated = c.state.terminated.has_value();
      cv.started = c.started.value_or(false);
      if (c.state.running) cv.started_at = c.state.running->started_at;
      v.containers[c.name] = cv;
    }
  return v;
}

Kubelet::~Kubelet() { Stop(); }

void Kubelet::Start() {
  const auto& c = o_.config;
  auto snapshot = [this](const std::string& source, std::vector<api::Pod> pods) { OnSnapshot(source, std::move(pods)); };
  if (!c.static_pod_path.empty()) {
    pod_config_->AddSource(api::kSourceFile);
    sources_.push_back(config::NewFileSource(c.static_pod_path, o_.node_name, c.file_check_frequency, snapshot));
  }
  if (d_.api) {
    pod_config_->AddSource(api::kSourceAPI);
    mirrors_ = std::make_unique<MirrorPodManager>(d_.api, o_.node_name, d_.node_uid, [this] {
      std::vector<api::Pod> out;
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [_, p] : pods_)
        if (api::IsStaticPod(p)) out.push_back(p);
      return out;
    });
    auto* mirrors = mirrors_.get();
    sources_.push_back(config::NewAPISource(
        d_.api, o_.node_name, snapshot, [mirrors](std::map<std::string, nlohmann::json> m) { mirrors->SetMirrors(std::move(m)); },
        [this](const std::set<std::string>& uids) {
          std::lock_guard<std::mutex> l(mu_);
          undecodable_ = uids;
        }));
    mirrors_->Start(o_.mirror_period);
  }
  if (!c.static_pod_url.empty()) {
    pod_config_->AddSource(api::kSourceHTTP);
    std::map<std::string, std::vector<std::string>> headers;
    for (auto it = c.static_pod_url_header.begin(); it != c.static_pod_url_header.end(); ++it)
      if (it.value().is_array())
        for (const auto& v : it.value())
          if (v.is_string()) headers[it.key()].push_back(v.get<std::string>());
    sources_.push_back(config::NewHTTPSource(c.static_pod_url, headers, o_.node_name, c.http_check_frequency, snapshot));
  }
  // No source at all (and none added by hand): nothing will ever speak, and nothing is wanted.
  if (pod_config_->AllSourcesSeen()) sources_ready_ = true;
  probes_->Start();
  loop_heartbeat_ = SteadyNowMs();
  loop_thread_ = std::thread([this] { GuardedRun("kubelet SyncLoop", [this] { SyncLoop(); }); });
  gc_thread_ = std::thread([this] { GuardedRun("kubelet GCLoop", [this] { GCLoop(); }); });
  // PLEG first: its first relist tells housekeeping what already runs (pods to adopt), and admission which
  // pods it re-admits after a restart. Bounded: a runtime that does not answer delays the sources by 10 s at most.
  pleg_->Start();
  pleg_->WaitForFirstRelist(std::chrono::seconds(10));
  for (auto& s : sources_) s->Start();
  started_ = true;
  log_->info("Starting kubelet main sync loop node=\"{}\" sources={}", o_.node_name, sources_.size());
}

void Kubelet::Stop() {
  if (!started_.exchange(false)) return;
  for (auto& s : sources_) s->Stop();
  if (mirrors_) mirrors_->Stop();
  pleg_->Stop();
  {
    std::lock_guard<std::mutex> l(loop_mu_);
    stop_ = true;
  }
  loop_cv_.notify_all();
  if (loop_thread_.joinable()) loop_thread_.join();
  if (gc_thread_.joinable()) gc_thread_.join();
  probes_->Stop();
  workers_->Stop();
}

void Kubelet::OnSnapshot(const std::string& source, std::vector<api::Pod> pods) {
  pod_config_->OnSnapshot(source, std::move(pods));
}

bool Kubelet::SourcesReady() const { return sources_ready_.load(); }

void Kubelet::Push(LoopEvent ev, bool may_drop) {
  std::unique_lock<std::mutex> l(loop_mu_);
  if (may_drop) {
    if (pleg_events_queued_ + ev.pleg.size() > kPLEGQueueCapacity) {
      log_->error("Event channel is full, discarding this relist() cycle event");
      return;
    }
    pleg_events_queued_ += ev.pleg.size();
  } else {
    loop_cv_.wait(l, [&] { return stop_ || loop_queue_.size() < kConfigQueueCapacity; });
    if (stop_) return;
  }
  loop_queue_.push_back(std::move(ev));
  loop_cv_.notify_all();
}

void Kubelet::SyncLoop() {
  auto next_housekeeping = std::chrono::steady_clock::now() + o_.housekeeping_period;
  std::unique_lock<std::mutex> l(loop_mu_);
  while (!stop_) {
    loop_heartbeat_ = SteadyNowMs();
    if (loop_queue_.empty()) loop_cv_.wait_until(l, next_housekeeping, [&] { return stop_ || !loop_queue_.empty(); });
    if (stop_) break;
    std::deque<LoopEvent> batch;
    batch.swap(loop_queue_);
    pleg_events_queued_ = 0;
    loop_cv_.notify_all();  // wake producers waiting for room
    l.unlock();
    for (auto& ev : batch) {
      if (ev.kind == LoopEvent::kConfig) {
        HandleChanges(std::move(ev.changes));
        if (ev.sources_seen) sources_ready_ = true;
      } else {
        HandlePLEG(ev.pleg);
      }
    }
    if (std::chrono::steady_clock::now() >= next_housekeeping) {
      Housekeeping();
      next_housekeeping = std::chrono::steady_clock::now() + o_.housekeeping_period;
    }
    l.lock();
  }
}

void Kubelet::RejectPod(const api::Pod& pod, const std::string& reason, const std::string& message) {
  d_.recorder->PodEvent(pod, events::kWarning, reason, message);
  api::PodStatus st;
  st.phase = "Failed";
  st.reason = reason;
  st.message = message;
  st.start_time = d_.clock->Now();
  status_.SetPodStatus(pod.metadata.uid, st);
  if (d_.status_syncer) d_.status_syncer->SetStatus(pod, st);
}

void Kubelet::HandleChanges(std::vector<config::PodChange> changes) {
  // Additions in creation order, as upstream's HandlePodAdditions: after a restart, pods are re-admitted in the order
  // they were first admitted, so the newest, not an old one, is the one that no longer fits.
  // Removals stay first (a replaced static pod's old instance terminates before its successor is seen).
  auto rank = [](const config::PodChange& c) { return c.op == config::PodOp::kRemove ? 0 : c.op == config::PodOp::kAdd ? 1 : 2; };
  std::stable_sort(changes.begin(), changes.end(), [&](const config::PodChange& a, const config::PodChange& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    if (a.op != config::PodOp::kAdd) return false;
    return a.pod.metadata.creation_timestamp.value_or(TimePoint{}) < b.pod.metadata.creation_timestamp.value_or(TimePoint{});
  });
  // What the runtime runs, read once for the whole batch (many ADDs come at once after a restart).
  std::optional<std::set<std::string>> running_in_runtime;
  auto runs_in_runtime = [&](const std::string& uid) {
    if (!running_in_runtime) {
      running_in_runtime.emplace();
      if (pleg_->HasRelisted())
        for (const auto& rp : pleg_->LastPods())
          if (rp.IsRunning()) running_in_runtime->insert(rp.uid);
    }
    return running_in_runtime->count(uid) > 0;
  };
  for (auto& ch : changes) {
    const std::string uid = ch.pod.metadata.uid;
    switch (ch.op) {
      case config::PodOp::kAdd: {
        bool restarted = false;
        {
          std::lock_guard<std::mutex> l(mu_);
          restarted = ever_removed_.erase(uid) > 0;
        }
        log_->info("SyncLoop ADD source=\"{}\" pod=\"{}\"", ch.pod.metadata.annotations[api::kConfigSourceAnnotation], PodDesc(ch.pod));
        // A pod the API already shows finished (completed, or evicted before a restart) never starts again:
        // it is only made sure to be stopped, keeping the API's status.
        if (std::string phase = TerminalPhaseInAPI(ch.pod); !phase.empty()) {
          log_->info("Pod is terminal in the API, not starting it pod=\"{}\" phase={}", PodDesc(ch.pod), phase);
          const auto& st = ch.pod.raw["status"];
          api::PodStatus keep;
          keep.phase = phase;
          keep.reason = st.value("reason", "");
          keep.message = st.value("message", "");
          keep.start_time = d_.clock->Now();
          status_.SetPodStatus(uid, keep);
          {
            std::lock_guard<std::mutex> l(mu_);
            pods_[uid] = ch.pod;
            if (d_.objects) d_.objects->RegisterPod(ch.pod);  // its ConfigMaps and Secrets watched
          }
          workers_->UpdatePod(UpdateType::kKill, uid, ch.pod);
          continue;
        }
        // Deleted while the kubelet was away (or before it saw the pod): no admission, straight to graceful
        // termination, after which the status manager finishes the deletion, as upstream.
        if (ch.pod.metadata.deletion_timestamp) {
          log_->info("SyncLoop DELETE source=\"{}\" pod=\"{}\" (deleted before it was seen)",
                     ch.pod.metadata.annotations[api::kConfigSourceAnnotation], PodDesc(ch.pod));
          {
            std::lock_guard<std::mutex> l(mu_);
            pods_[uid] = ch.pod;
            if (d_.objects) d_.objects->RegisterPod(ch.pod);  // its ConfigMaps and Secrets watched
          }
          probes_->AddPod(ch.pod);
          workers_->UpdatePod(UpdateType::kKill, uid, ch.pod, ch.pod.metadata.deletion_grace_period_seconds);
          continue;
        }
        // A pod the runtime already runs (a restarted kubelet) is re-admitted, never rejected for a label it
        // matched when it was admitted: node labels may have changed, or not be known yet.
        bool already_running = runs_in_runtime(uid);
        // Admitted pods that are still active count: terminal ones free their share, as upstream.
        auto admit_with = [&](const std::optional<api::StringMap>& labels) {
          std::lock_guard<std::mutex> l(mu_);
          if (labels && !labels->empty()) admit_node_.labels = *labels;
          std::vector<const api::Pod*> active_pods;
          for (const auto& [puid, p] : pods_) {
            auto st = status_.GetPodStatus(puid);
            if (st && (st->phase == "Succeeded" || st->phase == "Failed")) continue;
            active_pods.push_back(&p);
          }
          return AdmitPod(ch.pod, active_pods, admit_node_);
        };
        AdmitResult admit = admit_with(d_.node_labels ? d_.node_labels() : std::nullopt);
        // The watched Node may lag behind the label the scheduler matched: read it once and try again.
        if (!admit.admit && !already_running && admit.reason == "NodeAffinity" && d_.refresh_node_labels)
          if (auto labels = d_.refresh_node_labels(); labels && !labels->empty()) admit = admit_with(labels);
        if (!admit.admit && already_running && admit.reason == "NodeAffinity") {
          log_->warn("Pod already running on this node no longer matches the node's labels, keeping it pod=\"{}\"",
                     PodDesc(ch.pod));
          admit = AdmitResult{};
        }
        // A critical pod refused only for want of resources preempts lower pods instead (upstream's admission
        // failure handler, part of the resource predicate).
        if (!admit.admit && !already_running && admit.reason.rfind("OutOf", 0) == 0 && preemption::IsCriticalPod(ch.pod))
          admit = PreemptForCriticalPod(ch.pod, admit);
        // The eviction manager's handler comes first upstream: under pressure its reason wins.
        if (extra_admit_)
          if (AdmitResult extra = extra_admit_(ch.pod); !extra.admit) admit = extra;
        // Resources are allocated only to a pod every other check admitted.
        if (admit.admit && allocate_admit_) admit = allocate_admit_(ch.pod);
        if (!admit.admit) {
          log_->warn("Pod admission failed pod=\"{}\" reason=\"{}\" message=\"{}\"", PodDesc(ch.pod), admit.reason, admit.message);
          RejectPod(ch.pod, admit.reason, admit.message);
          {
            std::lock_guard<std::mutex> l(mu_);
            rejected_[uid] = ch.pod;
            if (rejected_.size() > 4096) rejected_.erase(rejected_.begin());
          }
          continue;
        }
        if (restarted && d_.metrics)
          d_.metrics->restarted_pods.Add({{"static", api::IsStaticPod(ch.pod) ? "true" : "false"}}).Increment();
        {
          std::lock_guard<std::mutex> l(mu_);
          pods_[uid] = ch.pod;
            if (d_.objects) d_.objects->RegisterPod(ch.pod);  // its ConfigMaps and Secrets watched
        }
        probes_->AddPod(ch.pod);
        workers_->UpdatePod(UpdateType::kCreate, uid, ch.pod);
        break;
      }
      case config::PodOp::kUpdate: {
        bool rejected = false;
        {
          std::lock_guard<std::mutex> l(mu_);
          if (!pods_.count(uid)) {
            auto r = rejected_.find(uid);
            rejected = r != rejected_.end();
            if (rejected) r->second = ch.pod;
          } else {
            pods_[uid] = ch.pod;
            if (d_.objects) d_.objects->RegisterPod(ch.pod);  // its ConfigMaps and Secrets watched
          }
        }
        if (rejected) {
          // A pod refused at admission never ran: its graceful deletion is finished at once, with its Failed status.
          if (ch.pod.metadata.deletion_timestamp && d_.status_syncer) {
            api::PodStatus final_status;
            if (auto st = status_.GetPodStatus(uid)) {
              final_status = *st;
            } else {
              final_status.phase = "Failed";
            }
            log_->info("SyncLoop DELETE source=\"api\" pod=\"{}\" (rejected at admission)", PodDesc(ch.pod));
            d_.status_syncer->FinalizeDeletion(ch.pod, final_status);
            std::lock_guard<std::mutex> l(mu_);
            rejected_.erase(uid);
          }
          continue;
        }
        {
          std::lock_guard<std::mutex> l(mu_);
          if (!pods_.count(uid)) continue;
        }
        if (ch.pod.metadata.deletion_timestamp) {
          // Graceful deletion: stop it with its grace period, write the final status, then delete it.
          log_->info("SyncLoop DELETE source=\"api\" pod=\"{}\"", PodDesc(ch.pod));
          workers_->UpdatePod(UpdateType::kKill, uid, ch.pod, ch.pod.metadata.deletion_grace_period_seconds);
        } else {
          log_->info("SyncLoop UPDATE pod=\"{}\"", PodDesc(ch.pod));
          workers_->UpdatePod(UpdateType::kUpdate, uid, ch.pod);
        }
        break;
      }
      case config::PodOp::kRemove: {
        log_->info("SyncLoop REMOVE pod=\"{}\"", PodDesc(ch.pod));
        {
          std::lock_guard<std::mutex> l(mu_);
          pods_.erase(uid);
          evicted_.erase(uid);
          rejected_.erase(uid);
          ever_removed_.insert(uid);
          if (ever_removed_.size() > 4096) ever_removed_.erase(ever_removed_.begin());
        }
        probes_->RemovePod(uid);
        if (d_.objects) d_.objects->UnregisterPod(uid);
        workers_->UpdatePod(UpdateType::kKill, uid, ch.pod);
        break;
      }
    }
  }
  if (d_.metrics) {
    std::lock_guard<std::mutex> l(mu_);
    double statics = 0;
    for (const auto& [_, p] : pods_)
      if (api::IsStaticPod(p)) ++statics;
    d_.metrics->desired_pods.Add({{"static", "true"}}).Set(statics);
    d_.metrics->desired_pods.Add({{"static", "false"}}).Set(static_cast<double>(pods_.size()) - statics);
    d_.metrics->active_pods.Add({{"static", "true"}}).Set(statics);
    d_.metrics->active_pods.Add({{"static", "false"}}).Set(static_cast<double>(pods_.size()) - statics);
  }
}

void Kubelet::HandlePLEG(const std::vector<pleg::PodLifecycleEvent>& events) {
  std::set<std::string> uids;
  for (const auto& e : events) {
    KLOG_V(log_, 4)("SyncLoop (PLEG): event for pod podUID=\"{}\" type=\"{}\" data=\"{}\"", e.uid, pleg::EventTypeName(e.type), e.data);
    uids.insert(e.uid);
  }
  for (const auto& uid : uids) {
    std::optional<api::Pod> pod;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it != pods_.end()) pod = it->second;
    }
    if (pod) workers_->UpdatePod(UpdateType::kSync, uid, pod);
  }
}

void Kubelet::Housekeeping() {
  std::map<std::string, api::Pod> desired;
  {
    std::lock_guard<std::mutex> l(mu_);
    desired = pods_;
  }
  auto keep = [&](const std::string& uid) { return desired.count(uid) > 0; };
  workers_->ForgetDone(keep);
  // Pods the runtime runs that no source wants: stop them, but only once every
  // source has spoken, so a restarting kubelet adopts what is still wanted.
  if (pleg_->HasRelisted() && SourcesReady()) {
    std::vector<kuberuntime::RuntimePod> running = pleg_->LastPods();
    // Status of pods neither wanted nor being torn down is forgotten; refused pods keep theirs (what /pods shows).
    std::set<std::string> keep_status, undecodable;
    for (const auto& [uid, _] : desired) keep_status.insert(uid);
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [uid, _] : rejected_) keep_status.insert(uid);
      for (auto it = evicted_.begin(); it != evicted_.end();) it = keep_status.count(it->first) ? std::next(it) : evicted_.erase(it);
      undecodable = undecodable_;
    }
    size_t running_pods = 0;
    std::map<std::string, double> containers_by_state;
    for (const auto& rp : running) {
      if (rp.IsRunning()) ++running_pods;
      for (const auto& c : rp.containers) containers_by_state[kuberuntime::ContainerStateName(c.state)] += 1;
      if (desired.count(rp.uid)) continue;
      if (workers_->IsKnown(rp.uid)) continue;  // being torn down, or just finished
      if (undecodable.count(rp.uid)) continue;  // an api pod the kubelet cannot read: never killed for that
      log_->info("Cleaning up orphaned pod podUID=\"{}\" pod=\"{}/{}\"", rp.uid, rp.namespace_, rp.name);
      workers_->UpdatePod(UpdateType::kKill, rp.uid, std::nullopt);
    }
    if (d_.metrics) {
      d_.metrics->running_pods.Set(static_cast<double>(running_pods));
      for (const char* s : {"running", "exited", "created", "unknown"})
        d_.metrics->running_containers.Add({{"container_state", s}}).Set(containers_by_state[s]);
    }
    status_.RemoveOrphanedStatuses(keep_status);
    probes_->CleanupPods(keep_status);
    // Pod cgroups of pods nobody wants and nothing runs in (e.g. left by a kubelet that stopped mid-teardown).
    if (d_.container_manager) {
      std::set<std::string> running_uids;
      for (const auto& rp : running) running_uids.insert(rp.uid);
      for (const auto& uid : d_.container_manager->PodCgroupUIDs()) {
        if (desired.count(uid) || running_uids.count(uid) || workers_->IsKnown(uid)) continue;
        log_->info("Orphaned pod found, removing pod cgroups podUID=\"{}\"", uid);
        if (auto st = d_.container_manager->DestroyPodCgroup(uid); !st.ok())
          log_->error("Failed to remove orphaned pod cgroup podUID=\"{}\" err=\"{}\"", uid, st.message());
      }
      if (d_.clock->Now() - last_qos_update_ >= std::chrono::minutes(1)) UpdateQOSCgroups();
    }
  }
}

void Kubelet::UpdateQOSCgroups() {
  if (!d_.container_manager) return;
  std::vector<api::Pod> pods;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [uid, p] : pods_) pods.push_back(p);
    last_qos_update_ = d_.clock->Now();
  }
  std::vector<const api::Pod*> active;
  for (const auto& p : pods) {
    auto st = status_.GetPodStatus(p.metadata.uid);
    if (st && (st->phase == "Succeeded" || st->phase == "Failed")) continue;
    active.push_back(&p);
  }
  if (auto st = d_.container_manager->UpdateQOSCgroups(active); !st.ok())
    log_->error("Failed to update QoS cgroup configuration err=\"{}\"", st.message());
}

void Kubelet::GCLoop() {
  std::unique_lock<std::mutex> l(loop_mu_);
  while (!stop_) {
    if (loop_cv_.wait_for(l, o_.gc_period, [&] { return stop_; })) break;
    l.unlock();
    std::map<std::string, bool> active;
    {
      std::lock_guard<std::mutex> pl(mu_);
      for (const auto& [uid, _] : pods_) active[uid] = true;
    }
    auto pods = d_.runtime->GetPods(true);
    if (pods.ok()) {
      if (auto st = d_.runtime->GarbageCollect(*pods, active); !st.ok())
        log_->error("Container garbage collection failed err=\"{}\"", st.message());
    }
    backoff_.GC();
    l.lock();
  }
}

bool Kubelet::BeingDeleted(const std::string& uid) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = pods_.find(uid);
  return it == pods_.end() || it->second.metadata.deletion_timestamp.has_value();
}

absl::StatusOr<api::PodStatus> Kubelet::RefreshStatus(const api::Pod& pod, kuberuntime::PodStatus* rs, bool terminal) {
  auto s = d_.runtime->GetPodStatus(pod.metadata.uid, pod.metadata.name, pod.metadata.namespace_);
  if (!s.ok()) return s.status();
  *rs = std::move(*s);
  status::StatusInputs in;
  in.runtime_type = d_.runtime->RuntimeType();
  in.host_ip = o_.node_ip;
  in.now = d_.clock->Now();
  in.pod_is_terminal = terminal;
  std::string uid = pod.metadata.uid;
  in.waiting_reason = [this, uid](const std::string& c) { return d_.runtime->GetWaitingReason(uid, c); };
  in.readiness = [this](const std::string& id) { return probes_->Readiness(id); };
  in.startup = [this](const std::string& id) { return probes_->Startup(id); };
  std::optional<api::PodStatus> old = status_.GetPodStatus(uid);
  api::PodStatus st = status::GenerateAPIPodStatus(pod, *rs, old, in);
  // A terminal phase is final, as upstream's status manager keeps it.
  if (old && (old->phase == "Failed" || old->phase == "Succeeded") && st.phase != "Failed" && st.phase != "Succeeded") {
    st.phase = old->phase;
    st.reason = old->reason;
    st.message = old->message;
  }
  // An evicted pod is Failed / Evicted with the eviction manager's message, as upstream's kill status function sets it.
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto ev = evicted_.find(uid); ev != evicted_.end()) {
      st.phase = "Failed";
      st.reason = ev->second.reason;
      st.message = ev->second.message;
      api::PodCondition dt;
      dt.type = "DisruptionTarget";
      dt.status = "True";
      dt.reason = "TerminationByKubelet";
      dt.message = ev->second.condition_message;
      dt.last_transition_time = in.now;
      st.conditions.push_back(dt);
    }
  }
  // The syncer gets the stored status (transition times kept), so an unchanged pod is not written again.
  if (status_.SetPodStatus(uid, st)) {
    if (d_.status_syncer) d_.status_syncer->SetStatus(pod, st);
    probes_->Poke(uid);  // a container (re)started: its probes need not wait a whole period
  }
  // kubelet_pod_start_duration_seconds: first seen to all containers running, once per pod.
  bool all_running = !st.container_statuses.empty();
  for (const auto& c : st.container_statuses)
    if (!c.state.running) all_running = false;
  // Only a start this kubelet saw (Pending before): pods adopted after a restart are not counted, as upstream.
  if (all_running && d_.metrics && pod.metadata.creation_timestamp && old && old->phase == "Pending") {
    std::lock_guard<std::mutex> l(mu_);
    if (start_recorded_.insert(uid).second) {
      double secs = std::chrono::duration<double>(d_.clock->Now() - *pod.metadata.creation_timestamp).count();
      d_.metrics->pod_start_duration.Observe(std::max(0.0, secs));
      KLOG_V(log_, 2)("Observed pod startup duration pod=\"{}\" podStartDuration=\"{:.3f}s\"", PodDesc(pod), secs);
    }
  }
  return st;
}

absl::StatusOr<bool> Kubelet::SyncPod(const api::Pod& pod, UpdateType type) {
  auto start = std::chrono::steady_clock::now();
  // Two instances of one static pod never run at once (think etcd's data dir):
  // the new one starts when the old one is gone, as upstream.
  if (api::IsStaticPod(pod) && workers_->OtherInstanceTerminating(pod.FullName(), pod.metadata.uid)) {
    KLOG_V(log_, 2)("Pod is waiting for the previous instance to terminate pod=\"{}\"", PodDesc(pod));
    kuberuntime::PodStatus rs;
    if (auto st = RefreshStatus(pod, &rs); !st.ok()) return st.status();
    return false;
  }
  kuberuntime::PodStatus rs;
  auto st = RefreshStatus(pod, &rs);
  if (!st.ok()) return st.status();
  if (st->phase == "Succeeded" || st->phase == "Failed") {
    KLOG_V(log_, 2)("Pod is terminal, stopping it pod=\"{}\" phase={}", PodDesc(pod), st->phase);
    return true;
  }
  // The second half of admission, here so that no plugin call of one pod holds the sync loop: a failure rejects
  // the pod as upstream's admission would have.
  if (d_.prepare_resources) {
    if (auto prep = d_.prepare_resources(pod); !prep.ok()) {
      std::string message = "Allocate failed due to " + std::string(prep.message()) + ", which is unexpected";
      log_->warn("Pod admission failed pod=\"{}\" reason=\"UnexpectedAdmissionError\" message=\"{}\"", PodDesc(pod), message);
      RejectPod(pod, "UnexpectedAdmissionError", message);
      return true;
    }
  }
  // The pod cgroup (with the pod's limits) before anything of the pod runs; the QoS cgroups follow a new pod.
  if (d_.container_manager) {
    if (auto cg = d_.container_manager->EnsurePodCgroup(pod); !cg.ok()) {
      d_.recorder->PodEvent(pod, events::kWarning, "FailedCreatePodContainer",
                            "unable to ensure pod container exists: " + std::string(cg.message()));
      return cg;
    }
    if (type == UpdateType::kCreate) UpdateQOSCgroups();
  }
  kuberuntime::ProbeLookup lookup;
  lookup.liveness = [this](const std::string& id) { return probes_->Liveness(id); };
  lookup.startup = [this](const std::string& id) { return probes_->Startup(id); };
  auto result = d_.runtime->SyncPod(pod, rs, &backoff_, lookup);
  if (result.started_any || !result.error.ok()) {
    auto again = RefreshStatus(pod, &rs);
    if (!again.ok()) log_->warn("Unable to refresh pod status pod=\"{}\" err=\"{}\"", PodDesc(pod), again.status().message());
  }
  if (d_.metrics) {
    const char* op = type == UpdateType::kCreate ? "create" : type == UpdateType::kUpdate ? "update" : "sync";
    d_.metrics->pod_worker_duration.Add({{"operation_type", op}}, metrics::KubeletMetrics::kPodWorkerBuckets)
        .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (!result.error.ok()) return result.error;
  return false;
}

absl::Status Kubelet::SyncTerminatingPod(const std::string& uid, const api::Pod* pod, std::optional<int64_t> grace) {
  auto pods = d_.runtime->GetPods(true);
  if (!pods.ok()) return pods.status();
  for (const auto& rp : *pods) {
    if (rp.uid != uid) continue;
    log_->info("Killing pod pod=\"{}/{}\" podUID=\"{}\"", rp.namespace_, rp.name, uid);
    if (auto st = d_.runtime->KillPod(pod, rp, grace); !st.ok()) return st;
  }
  if (pod) {
    kuberuntime::PodStatus rs;
    auto st = RefreshStatus(*pod, &rs, BeingDeleted(uid));
    if (!st.ok()) log_->warn("Unable to refresh final pod status pod=\"{}\" err=\"{}\"", PodDesc(*pod), st.status().message());
  }
  return absl::OkStatus();
}

absl::Status Kubelet::SyncTerminatedPod(const std::string& uid, const api::Pod* pod) {
  // Nothing of the pod runs any more: its cgroup goes (also for a finished pod that stays).
  if (d_.container_manager) {
    if (auto st = d_.container_manager->DestroyPodCgroup(uid); !st.ok())
      log_->error("Failed to remove the pod cgroup podUID=\"{}\" err=\"{}\"", uid, st.message());
    UpdateQOSCgroups();
  }
  // A pod that finished but is still wanted keeps its exited containers for its status.
  bool deleting = BeingDeleted(uid);
  if (!deleting) return absl::OkStatus();
  if (pod && d_.status_syncer) {
    if (api::IsStaticPod(*pod)) {
      d_.status_syncer->Forget(uid);
    } else if (auto final_status = status_.GetPodStatus(uid)) {
      d_.status_syncer->FinalizeDeletion(*pod, *final_status);
    }
  }
  auto pods = d_.runtime->GetPods(true);
  if (!pods.ok()) return pods.status();
  for (const auto& rp : *pods) {
    if (rp.uid != uid) continue;
    if (auto st = d_.runtime->RemovePod(rp); !st.ok()) return st;
  }
  if (auto st = d_.volumes->UnmountVolumesForPod(uid); !st.ok())
    return absl::IsUnavailable(st) ? RetryLater(st) : st;  // the pod's volume operation is still running
  d_.runtime->ForgetPod(uid);
  {
    std::lock_guard<std::mutex> l(mu_);
    start_recorded_.erase(uid);
  }
  log_->info("Pod fully terminated and removed podUID=\"{}\"{}", uid, pod ? " pod=\"" + PodDesc(*pod) + "\"" : std::string());
  return absl::OkStatus();
}

std::vector<api::Pod> Kubelet::GetPods() const {
  std::vector<api::Pod> out;
  std::lock_guard<std::mutex> l(mu_);
  // Refused pods first: a lookup by name that keeps the last match finds a running pod of that name over them.
  for (const auto* m : {&rejected_, &pods_})
    for (const auto& [uid, p] : *m) {
      api::Pod pod = p;
      if (auto st = status_.GetPodStatus(uid)) pod.status = *st;
      out.push_back(std::move(pod));
    }
  return out;
}

bool Kubelet::Healthy(std::string* why) const {
  int64_t since = SteadyNowMs() - loop_heartbeat_.load();
  // The loop wakes at least every housekeeping period; allow generous slack.
  int64_t limit = std::chrono::duration_cast<std::chrono::milliseconds>(o_.housekeeping_period).count() * 5 + 30000;
  if (started_ && since > limit) {
    if (why) *why = "syncLoop is not responding: last heartbeat " + std::to_string(since / 1000) + "s ago";
    return false;
  }
  return pleg_->Healthy(why);
}

}  // namespace kubelet

namespace kubelet {

std::vector<const api::Pod*> Kubelet::ActivePodsLocked() const {
  std::vector<const api::Pod*> out;
  for (const auto& [uid, p] : pods_) {
    if (evicted_.count(uid)) continue;
    auto st = status_.GetPodStatus(uid);
    if (st && (st->phase == "Succeeded" || st->phase == "Failed")) continue;
    out.push_back(&p);
  }
  return out;
}

std::vector<api::Pod> Kubelet::ActivePods() const {
  std::vector<api::Pod> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const api::Pod* p : ActivePodsLocked()) out.push_back(*p);
  return out;
}

AdmitResult Kubelet::PreemptForCriticalPod(const api::Pod& pod, const AdmitResult& refused) {
  std::vector<api::Pod> victims;
  std::string signal;
  {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<const api::Pod*> active = ActivePodsLocked();
    auto reqs = preemption::InsufficientResources(pod, active, admit_node_);
    if (reqs.empty()) return refused;  // refused for another reason after all
    auto chosen = preemption::PodsToPreempt(pod, active, reqs);
    if (!chosen.ok()) {
      std::string err = "preemption: error finding a set of pods to preempt: " + std::string(chosen.status().message());
      return {false, "UnexpectedAdmissionError", "Unexpected error while attempting to recover from admission failure: " + err};
    }
    // Every other check must pass once they are gone.
    std::vector<const api::Pod*> rest;
    for (const api::Pod* p : active)
      if (std::find(chosen->begin(), chosen->end(), p) == chosen->end()) rest.push_back(p);
    if (AdmitResult again = AdmitPod(pod, rest, admit_node_); !again.admit) return again;
    for (const api::Pod* v : *chosen) {
      victims.push_back(*v);
      evicted_[v->metadata.uid] = {preemption::kReason, preemption::kMessage, preemption::kConditionMessage};
    }
    signal = reqs[0].resource;
    KLOG_V(log_, 3)("Preempting pods to free up resources pod=\"{}\" insufficientResources=\"{}\"", PodDesc(pod),
                    preemption::RequirementsString(reqs));
  }
  for (const auto& v : victims) {
    d_.recorder->PodEvent(v, events::kWarning, preemption::kReason, preemption::kMessage);
    log_->info("Preempting pod to admit a critical pod pod=\"{}\" podUID=\"{}\" criticalPod=\"{}\"", PodDesc(v), v.metadata.uid,
               PodDesc(pod));
    // Its own worker stops it within its grace period; nothing here waits for that.
    workers_->UpdatePod(UpdateType::kKill, v.metadata.uid, v);
    if (d_.metrics) d_.metrics->preemptions.Add({{"preemption_signal", signal}}).Increment();
  }
  return AdmitResult{};
}

bool Kubelet::EvictPod(const api::Pod& pod, int64_t grace, const std::string& message) {
  const std::string& uid = pod.metadata.uid;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!pods_.count(uid)) return false;
    evicted_[uid] = {eviction::kReason, message, message};
  }
  d_.recorder->PodEvent(pod, events::kWarning, eviction::kReason, message);
  workers_->UpdatePod(UpdateType::kKill, uid, pod, grace);
  return true;
}

absl::Status Kubelet::DeleteUnusedContainers() {
  std::map<std::string, bool> active;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [uid, _] : pods_) active[uid] = true;
  }
  auto pods = d_.runtime->GetPods(true);
  if (!pods.ok()) return pods.status();
  return d_.runtime->GarbageCollect(*pods, active);
}

bool Kubelet::PodTornDown(const std::string& uid) const { return !workers_->IsKnown(uid) || workers_->IsDone(uid); }

}  // namespace kubelet
