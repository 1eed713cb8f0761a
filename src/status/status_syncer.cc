#include "kubelet/status/status_syncer.h"
#include "kubelet/util/guard.h"

#include "kubelet/api/codec.h"

namespace kubelet::status {

PodStatusSyncer::PodStatusSyncer(client::ApiClient* api) : api_(api), log_(log::Get("status_manager")) {}
PodStatusSyncer::~PodStatusSyncer() { Stop(); }

void PodStatusSyncer::Start() {
  thread_ = std::thread([this] { GuardedRun("status_syncer Loop", [this] { Loop(); }); });
}

void PodStatusSyncer::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PodStatusSyncer::SetStatus(const api::Pod& pod, const api::PodStatus& status) {
  std::lock_guard<std::mutex> l(mu_);
  Entry& e = entries_[pod.metadata.uid];
  nlohmann::json js = api::EncodePodStatus(status);
  if (e.status == js && !e.dirty) return;
  e.ns = pod.metadata.namespace_;
  e.name = pod.metadata.name;
  e.uid = pod.metadata.uid;
  e.mirror = api::IsStaticPod(pod);
  e.status = js;
  e.dirty = true;
  cv_.notify_all();
}

void PodStatusSyncer::FinalizeDeletion(const api::Pod& pod, const api::PodStatus& final_status) {
  SetStatus(pod, final_status);
  std::lock_guard<std::mutex> l(mu_);
  Entry& e = entries_[pod.metadata.uid];
  e.delete_after = !e.mirror;
  e.dirty = true;
  cv_.notify_all();
}

void PodStatusSyncer::Forget(const std::string& uid) {
  std::lock_guard<std::mutex> l(mu_);
  entries_.erase(uid);
}

int PodStatusSyncer::SyncOnce() {
  std::vector<Entry> work;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [_, e] : entries_)
      if (e.dirty) work.push_back(e);
  }
  int failed = 0;
  for (const auto& e : work) {
    std::string path = "/api/v1/namespaces/" + e.ns + "/pods/" + e.name;
    nlohmann::json patch = {{"status", e.status}};
    // The UID precondition keeps a status from landing on a newer pod of the same name (not for mirrors: their UID is the API's).
    if (!e.mirror) patch["metadata"] = {{"uid", e.uid}};
    auto r = api_->Patch(path + "/status", patch, client::PatchType::kStrategicMerge);
    bool gone = !r.ok() && r.status().code() == absl::StatusCode::kNotFound;
    if (gone && e.mirror) {
      // The mirror pod is not there yet (or was deleted): keep the status for when it is.
      ++failed;
      continue;
    }
    if (!r.ok() && !gone) {
      ++failed;
      log_->warn("Failed to update status for pod pod=\"{}/{}\" err=\"{}\"", e.ns, e.name, r.status().message());
      continue;
    }
    if (r.ok() && !e.mirror && (*r)["metadata"].value("uid", e.uid) != e.uid) gone = true;
    if (e.delete_after && !gone) {
      auto st = api_->Delete(path, {{"gracePeriodSeconds", 0}, {"preconditions", {{"uid", e.uid}}}});
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound) {
        ++failed;
        log_->warn("Failed to delete pod pod=\"{}/{}\" err=\"{}\"", e.ns, e.name, st.message());
        continue;
      }
      log_->info("Pod fully terminated and removed from the API server pod=\"{}/{}\"", e.ns, e.name);
    }
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(e.uid);
    if (it == entries_.end()) continue;
    // Written unless a newer status arrived meanwhile.
    if (it->second.status == e.status && it->second.delete_after == e.delete_after) it->second.dirty = false;
    if (gone || e.delete_after) entries_.erase(it);
  }
  return failed;
}

void PodStatusSyncer::Loop() {
  Duration backoff = std::chrono::milliseconds(500);
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    bool any = false;
    for (const auto& [_, e] : entries_) any |= e.dirty;
    if (!any) {
      cv_.wait_for(l, std::chrono::seconds(10));
      continue;
    }
    l.unlock();
    int failed = SyncOnce();
    l.lock();
    if (failed) {
      cv_.wait_for(l, backoff, [&] { return stop_; });
      backoff = std::min<Duration>(backoff * 2, std::chrono::seconds(30));
    } else {
      backoff = std::chrono::milliseconds(500);
    }
  }
}

}  // namespace kubelet::status
