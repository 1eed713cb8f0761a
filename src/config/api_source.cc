#include <condition_variable>
#include <random>

#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/util/logging.h"

namespace kubelet::config {
namespace {

using json = nlohmann::json;

class APISource : public PodSource {
 public:
  APISource(client::ApiClient* api, std::string node, SnapshotFn fn,
            std::function<void(std::map<std::string, json>)> on_mirrors)
      : api_(api), node_(std::move(node)), fn_(std::move(fn)), on_mirrors_(std::move(on_mirrors)), log_(log::Get("api_source")) {}
  ~APISource() override { Stop(); }

  void Start() override {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    stop_flag_ = true;
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::string Selector() const { return "fieldSelector=spec.nodeName%3D" + node_; }

  bool Sleep(Duration d) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, d, [&] { return stop_; });
  }

  void Publish() {
    std::vector<api::Pod> pods;
    std::map<std::string, json> mirrors;
    for (const auto& [uid, obj] : objects_) {
      auto pod = PrepareAPIPod(obj);
      if (!pod.ok()) {
        log_->error("Invalid pod from the API server, skipping it pod=\"{}/{}\" err=\"{}\"", obj["metadata"].value("namespace", ""),
                    obj["metadata"].value("name", ""), pod.status().message());
        continue;
      }
      if (pod->metadata.annotations.count(api::kConfigMirrorAnnotation)) {  // mirrors of our static pods
        mirrors[pod->FullName()] = obj;
        continue;
      }
      pods.push_back(std::move(*pod));
    }
    if (on_mirrors_) on_mirrors_(std::move(mirrors));
    fn_(api::kSourceAPI, std::move(pods));
  }

  bool List() {
    auto list = api_->Get("/api/v1/pods?" + Selector());
    if (!list.ok()) {
      log_->error("Failed to list pods from the API server node=\"{}\" err=\"{}\"", node_, list.status().message());
      return false;
    }
    objects_.clear();
    if ((*list).contains("items") && (*list)["items"].is_array())
      for (const auto& o : (*list)["items"]) objects_[o["metadata"].value("uid", "")] = o;
    rv_ = (*list)["metadata"].value("resourceVersion", "");
    Publish();
    return true;
  }

  void Run() {
    std::mt19937 rng{std::random_device{}()};
    Duration backoff = std::chrono::milliseconds(500);
    bool need_list = true;
    while (!stop_flag_) {
      if (need_list) {
        if (!List()) {
          if (Sleep(backoff)) return;
          backoff = std::min<Duration>(backoff * 2, std::chrono::seconds(30));
          continue;
        }
        need_list = false;
        backoff = std::chrono::milliseconds(500);
      }
      bool expired = false;
      // Upstream picks a watch timeout between 5 and 10 minutes so reflectors do not resync in step.
      int timeout = 300 + static_cast<int>(rng() % 300);
      auto st = api_->Watch("/api/v1/pods?watch=true&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout) +
                                "&resourceVersion=" + rv_ + "&" + Selector(),
                            [&](const json& ev) {
                              std::string type = ev.value("type", "");
                              const json& obj = ev.contains("object") ? ev["object"] : json();
                              if (type == "ERROR") {
                                if (obj.value("code", 0) == 410) expired = true;
                                log_->info("Watch of pods ended by the API server reason=\"{}\" message=\"{}\"",
                                           obj.value("reason", ""), obj.value("message", ""));
                                return false;
                              }
                              if (obj.contains("metadata")) rv_ = obj["metadata"].value("resourceVersion", rv_);
                              if (type == "BOOKMARK") return true;
                              std::string uid = obj["metadata"].value("uid", "");
                              if (type == "DELETED") {
                                objects_.erase(uid);
                              } else {
                                objects_[uid] = obj;
                              }
                              Publish();
                              return true;
                            },
                            &stop_flag_);
      if (stop_flag_) return;
      if (expired) {
        need_list = true;
        continue;
      }
      if (!st.ok()) {
        log_->warn("Watch of pods failed, will retry err=\"{}\" retryIn=\"{}ms\"", st.message(),
                   std::chrono::duration_cast<std::chrono::milliseconds>(backoff).count());
        if (client::StatusReason(st) == "Expired" || st.code() == absl::StatusCode::kOutOfRange) need_list = true;
        if (Sleep(backoff)) return;
        backoff = std::min<Duration>(backoff * 2, std::chrono::seconds(30));
      } else {
        backoff = std::chrono::milliseconds(500);
      }
    }
  }

  client::ApiClient* api_;
  std::string node_;
  SnapshotFn fn_;
  std::function<void(std::map<std::string, json>)> on_mirrors_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> stop_flag_{false};
  std::map<std::string, json> objects_;
  std::string rv_;
};

}  // namespace

absl::StatusOr<api::Pod> PrepareAPIPod(json obj) {
  if (!obj.is_object()) return absl::InvalidArgumentError("pod is not an object");
  obj["apiVersion"] = "v1";
  obj["kind"] = "Pod";
  // Status is the kubelet's to write; bookkeeping fields would make every status write look like a spec change.
  // Only a terminal phase is kept (with its reason): a pod that finished never runs again, even after a restart.
  json terminal;
  if (obj.contains("status") && obj["status"].is_object()) {
    const json& st = obj["status"];
    std::string phase = st.contains("phase") && st["phase"].is_string() ? st["phase"].get<std::string>() : "";
    if (phase == "Failed" || phase == "Succeeded") {
      terminal = {{"phase", phase}};
      for (const char* k : {"reason", "message"})
        if (st.contains(k) && st[k].is_string()) terminal[k] = st[k];
    }
  }
  obj.erase("status");
  if (!terminal.is_null()) obj["status"] = terminal;
  if (obj.contains("metadata") && obj["metadata"].is_object()) {
    obj["metadata"].erase("resourceVersion");
    obj["metadata"].erase("managedFields");
    if (!obj["metadata"].contains("annotations") || !obj["metadata"]["annotations"].is_object())
      obj["metadata"]["annotations"] = json::object();
    obj["metadata"]["annotations"][api::kConfigSourceAnnotation] = api::kSourceAPI;
  }
  api::ApplyPodDefaults(obj);
  return api::DecodePod(obj);
}

std::unique_ptr<PodSource> NewAPISource(client::ApiClient* api, const std::string& node_name, SnapshotFn fn,
                                        std::function<void(std::map<std::string, json>)> on_mirrors) {
  return std::make_unique<APISource>(api, node_name, std::move(fn), std::move(on_mirrors));
}

}  // namespace kubelet::config
