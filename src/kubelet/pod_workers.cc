#include "kubelet/kubelet/pod_workers.h"

#include <random>

#include "kubelet/util/logging.h"

namespace kubelet {
namespace {
Duration Jitter(Duration d) {
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(0.0, 0.5);
  return d + std::chrono::duration_cast<Duration>(d * dist(rng));
}
}  // namespace

PodWorkers::PodWorkers(Callbacks cb, size_t threads, Duration resync, Duration backoff)
    : cb_(std::move(cb)), resync_(resync), backoff_(backoff) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

PodWorkers::~PodWorkers() { Stop(); }

void PodWorkers::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void PodWorkers::Enqueue(const std::string& uid, State& s) {
  if (s.in_flight || s.queued) return;
  s.queued = true;
  ready_.push_back(uid);
  cv_.notify_one();
}

void PodWorkers::UpdatePod(UpdateType type, const std::string& uid, std::optional<api::Pod> pod,
                           std::optional<int64_t> grace) {
  std::lock_guard<std::mutex> l(mu_);
  State& s = pods_[uid];
  if (type == UpdateType::kKill) {
    if (pod) s.pod = std::move(pod);
    if (grace) s.grace = grace;
    if (s.phase == Phase::kSyncing) s.phase = Phase::kTerminating;
    if (s.phase == Phase::kDone) return;
  } else {
    if (s.phase == Phase::kDone && type == UpdateType::kCreate) {
      // The same UID came back after it was torn down: start it afresh.
      s = State{};
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
    if (it->second.phase == Phase::kDone && !it->second.in_flight && !it->second.queued && !keep(it->first)) {
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

void PodWorkers::Work() {
  static auto log = log::Get("pod_workers");
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    // Move due delayed work into the ready queue.
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
    if (stop_) return;
    if (ready_.empty()) {
      if (delayed_.empty()) {
        cv_.wait(l);
      } else {
        // Copy the deadline: the map node may be erased by another worker while we wait.
        auto until = delayed_.begin()->first;
        cv_.wait_until(l, until);
      }
      continue;
    }
    std::string uid = ready_.front();
    ready_.pop_front();
    auto it = pods_.find(uid);
    if (it == pods_.end()) continue;
    State& s = it->second;
    s.queued = false;
    if (s.in_flight || !s.pending) continue;
    s.pending = false;
    s.in_flight = true;
    Phase phase = s.phase;
    UpdateType type = s.pending_type;
    std::optional<api::Pod> pod = s.pod;
    std::optional<int64_t> grace = s.grace;
    l.unlock();

    absl::Status err;
    bool terminal = false;
    if (phase == Phase::kSyncing && pod) {
      auto r = cb_.sync_pod(*pod, type);
      if (r.ok()) {
        terminal = *r;
      } else {
        err = r.status();
      }
    } else if (phase == Phase::kTerminating) {
      err = cb_.sync_terminating(uid, pod ? &*pod : nullptr, grace);
    } else if (phase == Phase::kTerminated) {
      err = cb_.sync_terminated(uid, pod ? &*pod : nullptr);
    }
    if (!err.ok()) {
      log->error("Error syncing pod, skipping podUID=\"{}\" pod=\"{}\" err=\"{}\"", uid,
                 pod ? pod->metadata.namespace_ + "/" + pod->metadata.name : std::string(), err.message());
    }

    l.lock();
    it = pods_.find(uid);
    if (it == pods_.end()) continue;
    State& st = it->second;
    st.in_flight = false;
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
    }
    if (st.pending) {
      Enqueue(uid, st);
    } else if (st.phase != Phase::kDone) {
      Duration wait = err.ok() ? Jitter(resync_) : Jitter(backoff_);
      st.due = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait);
      delayed_.emplace(st.due, uid);
    }
  }
}

}  // namespace kubelet
