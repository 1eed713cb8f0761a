#include "kubelet/kubelet/mirror_pods.h"

#include <set>

#include "kubelet/api/codec.h"

namespace kubelet {

using json = nlohmann::json;

MirrorPodManager::MirrorPodManager(client::ApiClient* api, std::string node_name, std::function<std::string()> node_uid,
                                   StaticPodsFn static_pods)
    : api_(api), node_(std::move(node_name)), node_uid_(std::move(node_uid)), static_pods_(std::move(static_pods)),
      log_(log::Get("mirror_pods")) {}

MirrorPodManager::~MirrorPodManager() { Stop(); }

void MirrorPodManager::Start(Duration period) {
  thread_ = std::thread([this, period] {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      cv_.wait_for(l, period, [&] { return stop_; });
      if (stop_) break;
      l.unlock();
      if (auto st = SyncOnce(); !st.ok()) log_->warn("Mirror pod sync failed, will retry err=\"{}\"", st.message());
      l.lock();
    }
  });
}

void MirrorPodManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MirrorPodManager::SetMirrors(std::map<std::string, json> mirrors) {
  std::lock_guard<std::mutex> l(mu_);
  mirrors_ = std::move(mirrors);
  seen_ = true;
}

json MirrorPodManager::MirrorOf(const api::Pod& pod) const {
  json m = api::EncodePod(pod);
  m.erase("status");
  json& md = m["metadata"];
  md.erase("uid");
  md.erase("resourceVersion");
  md.erase("creationTimestamp");
  md["annotations"][api::kConfigMirrorAnnotation] = pod.metadata.annotations.at(api::kConfigHashAnnotation);
  std::string uid = node_uid_ ? node_uid_() : "";
  if (!uid.empty())
    md["ownerReferences"] = {{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", node_}, {"uid", uid}, {"controller", true}}};
  m["spec"]["nodeName"] = node_;
  return m;
}

absl::Status MirrorPodManager::SyncOnce() {
  std::map<std::string, json> mirrors;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!seen_) return absl::OkStatus();
    mirrors = mirrors_;
  }
  absl::Status first;
  std::set<std::string> wanted;
  for (const auto& pod : static_pods_()) {
    if (!pod.metadata.annotations.count(api::kConfigHashAnnotation)) continue;
    std::string full = pod.FullName();
    wanted.insert(full);
    std::string hash = pod.metadata.annotations.at(api::kConfigHashAnnotation);
    std::string path = "/api/v1/namespaces/" + pod.metadata.namespace_ + "/pods";
    auto it = mirrors.find(full);
    if (it != mirrors.end()) {
      std::string have = it->second["metadata"]["annotations"].value(api::kConfigMirrorAnnotation, "");
      bool deleting = it->second["metadata"].contains("deletionTimestamp");
      if (have == hash && !deleting) continue;
      log_->info("Deleting outdated mirror pod pod=\"{}/{}\"", pod.metadata.namespace_, pod.metadata.name);
      auto st = api_->Delete(path + "/" + pod.metadata.name,
                             {{"gracePeriodSeconds", 0}, {"preconditions", {{"uid", it->second["metadata"].value("uid", "")}}}});
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound) {
        if (first.ok()) first = st;
        continue;
      }
    }
    log_->info("Creating a mirror pod for static pod pod=\"{}/{}\"", pod.metadata.namespace_, pod.metadata.name);
    auto created = api_->Create(path, MirrorOf(pod));
    if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists && first.ok()) first = created.status();
  }
  for (const auto& [full, m] : mirrors) {
    if (wanted.count(full)) continue;
    std::string ns = m["metadata"].value("namespace", "default"), name = m["metadata"].value("name", "");
    log_->info("Deleting mirror pod of a static pod that is gone pod=\"{}/{}\"", ns, name);
    auto st = api_->Delete("/api/v1/namespaces/" + ns + "/pods/" + name,
                           {{"gracePeriodSeconds", 0}, {"preconditions", {{"uid", m["metadata"].value("uid", "")}}}});
    if (!st.ok() && st.code() != absl::StatusCode::kNotFound && first.ok()) first = st;
  }
  return first;
}

}  // namespace kubelet
