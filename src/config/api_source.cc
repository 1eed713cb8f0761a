#include <set>

#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/reflector.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"

namespace kubelet::config {
namespace {

using json = nlohmann::json;

class APISource : public PodSource {
 public:
  APISource(client::ApiClient* api, std::string node, SnapshotFn fn,
            std::function<void(std::map<std::string, json>)> on_mirrors, UndecodableFn on_undecodable)
      : api_(api),
        node_(std::move(node)),
        fn_(std::move(fn)),
        on_mirrors_(std::move(on_mirrors)),
        on_undecodable_(std::move(on_undecodable)),
        log_(log::Get("api_source")) {}
  ~APISource() override { Stop(); }

  void Start() override {
    reflector_ = std::make_unique<client::Reflector>(api_, "/api/v1/pods", "fieldSelector=spec.nodeName%3D" + node_, "pods",
                                                     [this](const client::Reflector::Store& objects) { Publish(objects); });
    reflector_->Start();
  }
  void Stop() override {
    if (reflector_) reflector_->Stop();
  }

 private:
  // A pod that cannot be decoded is reported and left alone: its last good version (if any) stays what the kubelet
  // runs, and a pod never decoded is marked so that nothing of it that runs is killed as an orphan.
  void Publish(const client::Reflector::Store& objects) {
    std::vector<api::Pod> pods;
    std::map<std::string, json> mirrors;
    std::set<std::string> undecodable;
    std::map<std::string, api::Pod> good;
    std::map<std::string, Decoded> decoded;
    for (const auto& [uid, obj] : objects) {
      // Only what changed is decoded again: an unchanged resourceVersion reuses the last decode.
      std::string rv = api::MetaField(obj, "resourceVersion");
      auto prev = decoded_.find(uid);
      Decoded& d = decoded[uid];
      if (prev != decoded_.end() && !rv.empty() && prev->second.rv == rv) {
        d = std::move(prev->second);
      } else {
        d.rv = rv;
        d.pod = PrepareAPIPod(obj);
      }
      const absl::StatusOr<api::Pod>& pod = d.pod;
      if (!pod.ok()) {
        std::string key = api::MetaField(obj, "namespace") + "/" + api::MetaField(obj, "name");
        if (!reported_.count(uid + "@" + api::MetaField(obj, "resourceVersion"))) {
          log_->error("Invalid pod from the API server, leaving it as it is pod=\"{}\" podUID=\"{}\" err=\"{}\"", key, uid,
                      pod.status().message());
          if (reported_.size() > 1024) reported_.clear();
          reported_.insert(uid + "@" + api::MetaField(obj, "resourceVersion"));
        }
        // A deletion is still honoured: its metadata is read on its own, and applies to the version last decoded
        // (or, for a pod never decoded since the start, lets its containers go as those of a pod no longer wanted).
        std::optional<TimePoint> deleted;
        std::optional<int64_t> grace;
        if (const json* meta = obj.is_object() && obj.contains("metadata") ? &obj["metadata"] : nullptr;
            meta && meta->is_object()) {
          TimePoint t;
          if (auto it = meta->find("deletionTimestamp"); it != meta->end() && it->is_string() && ParseRFC3339(it->get<std::string>(), &t))
            deleted = t;
          if (auto it = meta->find("deletionGracePeriodSeconds");
              it != meta->end() && it->is_number_integer() && it->get<int64_t>() >= 0)
            grace = it->get<int64_t>();
        }
        if (auto last = last_good_.find(uid); last != last_good_.end()) {
          api::Pod kept = last->second;
          if (deleted && !kept.metadata.deletion_timestamp) {
            kept.metadata.deletion_timestamp = deleted;
            kept.metadata.deletion_grace_period_seconds = grace;
            kept.raw["metadata"]["deletionTimestamp"] = obj["metadata"]["deletionTimestamp"];
            if (grace) kept.raw["metadata"]["deletionGracePeriodSeconds"] = *grace;
          }
          good.emplace(uid, kept);
          pods.push_back(std::move(kept));
        } else if (!deleted) {
          undecodable.insert(uid);
        }
        continue;
      }
      if (pod->metadata.annotations.count(api::kConfigMirrorAnnotation)) {  // mirrors of our static pods
        mirrors[pod->FullName()] = obj;
        continue;
      }
      good.emplace(uid, *pod);
      pods.push_back(*pod);
    }
    last_good_ = std::move(good);  // pruned to the pods that still exist
    decoded_ = std::move(decoded);
    if (on_undecodable_) on_undecodable_(undecodable);
    if (on_mirrors_) on_mirrors_(std::move(mirrors));
    fn_(api::kSourceAPI, std::move(pods));
  }

  client::ApiClient* api_;
  std::string node_;
  SnapshotFn fn_;
  std::function<void(std::map<std::string, json>)> on_mirrors_;
  UndecodableFn on_undecodable_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<client::Reflector> reflector_;
  struct Decoded {
    std::string rv;
    absl::StatusOr<api::Pod> pod = absl::UnknownError("not decoded");
  };
  // Touched only on the reflector's thread.
  std::map<std::string, Decoded> decoded_;  // by UID, pruned to the objects that exist
  std::map<std::string, api::Pod> last_good_;
  std::set<std::string> reported_;
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
                                        std::function<void(std::map<std::string, json>)> on_mirrors,
                                        UndecodableFn on_undecodable) {
  return std::make_unique<APISource>(api, node_name, std::move(fn), std::move(on_mirrors), std::move(on_undecodable));
}

}  // namespace kubelet::config
