#include "kubelet/stats/fs_resource_analyzer.h"

#include <set>

#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"

namespace kubelet::stats {

FsResourceAnalyzer::FsResourceAnalyzer(FsResourceAnalyzerOptions o) : o_(std::move(o)) {}

FsResourceAnalyzer::~FsResourceAnalyzer() { Stop(); }

void FsResourceAnalyzer::Start() {
  if (o_.period <= Duration::zero() || !o_.volumes || !o_.measure || thread_.joinable()) return;
  thread_ = std::thread([this] {
    GuardedRun("fs resource analyzer", [this] {
      std::unique_lock<std::mutex> l(mu_);
      while (!stop_) {
        l.unlock();
        Round(false);
        l.lock();
        cv_.wait_for(l, o_.period, [this] { return stop_; });
      }
    });
  });
}

void FsResourceAnalyzer::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  ops_.Stop();
}

void FsResourceAnalyzer::MeasureNow() { Round(true); }

void FsResourceAnalyzer::Round(bool wait) {
  if (!o_.volumes || !o_.measure) return;
  std::map<std::string, std::vector<VolumeRef>> by_pod;
  for (auto& v : o_.volumes()) by_pod[v.pod_uid].push_back(std::move(v));
  {
    // Pods no longer listed lose their numbers.
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = cache_.begin(); it != cache_.end();) it = by_pod.count(it->first) ? std::next(it) : cache_.erase(it);
  }
  for (auto& [uid, refs] : by_pod) {
    // A pod still measuring from the last round (a driver at its deadline) is skipped, not queued.
    (void)ops_.Run("pod/" + uid, [this, uid = uid, refs = refs] { return MeasurePod(uid, refs); });
  }
  if (!wait) return;
  for (const auto& [uid, refs] : by_pod)
    while (ops_.IsRunning("pod/" + uid)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

absl::Status FsResourceAnalyzer::MeasurePod(const std::string& uid, const std::vector<VolumeRef>& refs) {
  std::vector<VolumeStats> out;
  for (const auto& ref : refs) {
    auto st = o_.measure(ref);
    if (!st.ok()) {
      if (st.status().code() != absl::StatusCode::kNotFound)
        log::Get("stats")->warn("Failed to calculate volume metrics pod=\"{}/{}\" podUID=\"{}\" volumeName=\"{}\" err=\"{}\"",
                                ref.pod_namespace, ref.pod_name, uid, ref.name, st.status().message());
      continue;
    }
    VolumeStats v = std::move(*st);
    v.name = ref.name;
    if (!ref.pvc_name.empty()) {
      v.pvc_name = ref.pvc_name;
      v.pvc_namespace = ref.pod_namespace;
    }
    if (v.abnormal && *v.abnormal && o_.abnormal) o_.abnormal(ref, v.message);
    out.push_back(std::move(v));
  }
  std::lock_guard<std::mutex> l(mu_);
  if (!stop_) cache_[uid] = std::move(out);
  return absl::OkStatus();
}

std::vector<VolumeStats> FsResourceAnalyzer::PodVolumeStats(const std::string& pod_uid) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = cache_.find(pod_uid);
  return it == cache_.end() ? std::vector<VolumeStats>{} : it->second;
}

size_t FsResourceAnalyzer::Size() const {
  std::lock_guard<std::mutex> l(mu_);
  return cache_.size();
}

}  // namespace kubelet::stats
