#include "kubelet/kubelet/pod_workers.h"

#include <random>

#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"

namespace kubelet {
namespace {
Duration Jitter(Duration d) {
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(0.0, 0.5);
  return d + std::chrono::duration_cast<Duration>(d * dist(rng));
}
}  // namespace

PodWorkers::PodWorkers(Callbacks cb, Duration resync, Duration backoff)
    : cb_(std::move(cb)), resync_(resync), backoff_(backoff) {
  timer_ = std::thread([this] { GuardedRun("pod workers timer", [this] { Timer(); }); });
}

PodWorkers::~PodWorkers() { Stop(); }

void PodWorkers::Stop() {
  std::unique_lock<std::mutex> l(mu_);
  stop_ = true;
  // In-flight syncs give up their waits; each runner ends after its current call.
  for (auto& [_, s] : pods_)
    if (s.cancel) s.cancel->Cancel();
  cv_.notify_all();
  runners_cv_.wait(l, [&] { return runners_ == 0; });
  l.unlock();
  if (timer_.joinable()) timer_.join();
}

void PodWorkers::Enqueue(const std::string& uid, State& s) {
  if (s.running || stop_) return;
  s.running = true;
  ++runners_;
  // Detached: the runner holds no reference to its thread object; Stop() waits for runners_ to reach zero.
  std::thread([this, uid] { Run(uid); }).detach();
}

void PodWorkers::UpdatePod(UpdateType type, const std::string& uid, std::optional<api::Pod> pod,
                           std::optional<int64_t> grace) {
  std::lock_guard<std::mutex> l(mu_);
  State& s = pods_[uid];
  if (type == UpdateType::kKill) {
    if (pod) s.pod = std::move(pod);
    if (grace) s.grace = grace;
    if (s.phase == Phase::kSyncing) {
      s.phase = Phase::kTerminating;
      // A sync still in flight (waiting for a pull, say) gives up: the kill need not wait for it.
      if (s.in_flight && s.cancel) s.cancel->Cancel();
    }
    if (s.phase == Phase::kDone) return;
  } else {
    if (s.phase == Phase::kDone && type == UpdateType::kCreate) {
      // The same UID came back after it was torn down: start it afresh.
      bool running = s.running;
      s = State{};
      s.running = running;
    }
    if (s.phase != Phase::kSyncing) {
      if (type == UpdateType::kCreate) {
        s.restart_when_done = true;
        if (pod) s.pod = std::move(pod);
      }
      return;
    }
    if (pod) s.pod = std::move(pod);
  }
  s.pending = true;
  s.pending_type = type;
  Enqueue(uid, s);
}

bool PodWorkers::IsKnown(const std::string& uid) const {
  std::lock_guard<std::mutex> l(mu_);
  return pods_.count(uid) > 0;
}

bool PodWorkers::IsDone(const std::string& uid) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = pods_.find(uid);
  return it != pods_.end() && it->second.phase == Phase::kDone;
}

bool PodWorkers::OtherInstanceTerminating(const std::string& full_name, const std::string& uid) const {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [u, st] : pods_)
    if (u != uid && st.pod && st.pod->FullName() == full_name &&
        (st.phase == Phase::kTerminating || st.phase == Phase::kTerminated))
      return true;
  return false;
}

void PodWorkers::ForgetDone(const std::function<bool(const std::string&)>& keep) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = pods_.begin(); it != pods_.end();) {
    if (it->second.phase == Phase::kDone && !it->second.in_flight && !it->second.running && !keep(it->first)) {
      it = pods_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t PodWorkers::Size() const {
  std::lock_guard<std::mutex> l(mu_);
  return pods_.size();
}

size_t PodWorkers::ActiveRunners() const {
  std::lock_guard<std::mutex> l(mu_);
  return runners_;
}

void PodWorkers::Timer() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      auto when = delayed_.begin()->first;
      std::string uid = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      auto it = pods_.find(uid);
      if (it != pods_.end() && it->second.phase != Phase::kDone && it->second.due == when) {
        it->second.pending = true;
        if (it->second.phase == Phase::kSyncing) it->second.pending_type = UpdateType::kSync;
        Enqueue(uid, it->second);
      }
    }
    if (delayed_.empty()) {
      cv_.wait(l);
    } else {
      // Copy the deadline: the map node may be erased while we wait.
      auto until = delayed_.begin()->first;
      cv_.wait_until(l, until);
    }
  }
}

void PodWorkers::Run(std::string uid) {
  static auto log = log::Get("pod_workers");
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    auto it = pods_.find(uid);
    if (it == pods_.end()) break;
    State& s = it->second;
    if (s.in_flight || !s.pending) break;
    s.pending = false;
    s.in_flight = true;
    Phase phase = s.phase;
    UpdateType type = s.pending_type;
    std::optional<api::Pod> pod = s.pod;
    std::optional<int64_t> grace = s.grace;
    auto cancel = std::make_shared<CancelToken>();
    s.cancel = cancel;
    l.unlock();

    absl::Status err;
    bool terminal = false;
    {
      CancelScope scope(cancel.get());
      err = Guarded("pod worker " + uid, [&]() -> absl::Status {
        if (phase == Phase::kSyncing && pod) {
          auto r = cb_.sync_pod(*pod, type);
          if (!r.ok()) return r.status();
          terminal = *r;
          return absl::OkStatus();
        }
        if (phase == Phase::kTerminating) return cb_.sync_terminating(uid, pod ? &*pod : nullptr, grace);
        if (phase == Phase::kTerminated) return cb_.sync_terminated(uid, pod ? &*pod : nullptr);
        return absl::OkStatus();
      });
    }
    bool cancelled = cancel->cancelled();
    if (IsRetryLater(err) && !cancelled) {
      KLOG_V(log, 2)("Pod sync waits on work in flight, retrying podUID=\"{}\" reason=\"{}\"", uid, err.message());
    } else if (!err.ok() && !cancelled) {
      log->error("Error syncing pod, skipping podUID=\"{}\" pod=\"{}\" err=\"{}\"", uid,
                 pod ? pod->metadata.namespace_ + "/" + pod->metadata.name : std::string(), err.message());
    }

    l.lock();
    it = pods_.find(uid);
    if (it == pods_.end()) break;
    State& st = it->second;
    st.in_flight = false;
    st.cancel.reset();
    if (err.ok()) {
      if (phase == Phase::kSyncing && terminal && st.phase == Phase::kSyncing) {
        st.phase = Phase::kTerminating;
        st.pending = true;
      } else if (phase == Phase::kTerminating && st.phase == Phase::kTerminating) {
        st.phase = Phase::kTerminated;
        st.pending = true;
      } else if (phase == Phase::kTerminated && st.phase == Phase::kTerminated) {
        st.phase = Phase::kDone;
        if (st.restart_when_done) {
          st.phase = Phase::kSyncing;
          st.restart_when_done = false;
          st.grace.reset();
          st.pending = true;
          st.pending_type = UpdateType::kCreate;
        }
        // A newer instance of the same static pod may be waiting for this one.
        if (st.pod) {
          for (auto& [other_uid, other] : pods_)
            if (other_uid != uid && other.phase == Phase::kSyncing && other.pod && other.pod->FullName() == st.pod->FullName()) {
              other.pending = true;
              Enqueue(other_uid, other);
            }
        }
      }
    } else if (cancelled && phase == Phase::kSyncing && st.phase == Phase::kTerminating) {
      // The sync gave way to a kill: run the kill now, not after a back-off.
      st.pending = true;
    }
    if (st.pending) continue;
    if (st.phase != Phase::kDone) {
      Duration wait = err.ok() ? Jitter(resync_) : Jitter(backoff_);
      st.due = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait);
      delayed_.emplace(st.due, uid);
      cv_.notify_all();  // the timer may sleep past this new deadline
    }
    break;
  }
  if (auto it = pods_.find(uid); it != pods_.end()) it->second.running = false;
  --runners_;
  runners_cv_.notify_all();
}

}  // namespace kubelet
