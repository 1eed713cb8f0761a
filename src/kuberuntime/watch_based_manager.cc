// The Watch strategy's object manager: one reflector per referenced ConfigMap or Secret, reference-counted by the
// pods that use it. Reflectors that are no longer needed are stopped on a janitor thread, so unregistering a pod
// never waits for a watch to wind down.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/reflector.h"
#include "kubelet/kuberuntime/env.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"

namespace kubelet::kuberuntime {
namespace {

using json = nlohmann::json;

constexpr auto kSyncWait = std::chrono::seconds(2);

void Visit(const json& j, const std::string& ns, std::set<std::string>* out) {
  if (j.is_array()) {
    for (const auto& v : j) Visit(v, ns, out);
    return;
  }
  if (!j.is_object()) return;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (v.is_object()) {
      if (k == "configMap" || k == "configMapRef" || k == "configMapKeyRef") {
        if (std::string n = api::StringField(v, "name"); !n.empty()) out->insert("configmaps/" + ns + "/" + n);
      } else if (k == "secret") {
        std::string n = api::StringField(v, "secretName");
        if (n.empty()) n = api::StringField(v, "name");  // a projected volume's secret source
        if (!n.empty()) out->insert("secrets/" + ns + "/" + n);
      } else if (k == "secretRef" || k == "secretKeyRef") {
        if (std::string n = api::StringField(v, "name"); !n.empty()) out->insert("secrets/" + ns + "/" + n);
      }
    }
    Visit(v, ns, out);
  }
}

class WatchBasedEnvSource : public EnvSource {
 public:
  WatchBasedEnvSource(client::ApiClient* api, std::unique_ptr<EnvSource> fallback)
      : api_(api), fallback_(std::move(fallback)), log_(log::Get("watch_based_manager")) {
    janitor_ = std::thread([this] { GuardedRun("watch janitor", [this] { Janitor(); }); });
  }
  ~WatchBasedEnvSource() override {
    std::map<std::string, Watched> all;
    {
      std::lock_guard<std::mutex> l(mu_);
      all.swap(objects_);
      stop_ = true;
    }
    cv_.notify_all();
    janitor_cv_.notify_all();
    if (janitor_.joinable()) janitor_.join();
    for (auto& [key, w] : all)
      if (w.reflector) w.reflector->RequestStop();
    all.clear();
  }

  absl::StatusOr<json> Get(const std::string& resource, const std::string& ns, const std::string& name) override {
    const std::string key = resource + "/" + ns + "/" + name;
    {
      std::unique_lock<std::mutex> l(mu_);
      auto it = objects_.find(key);
      if (it != objects_.end()) {
        // A watch just opened lists first: wait a little for it rather than read the object a second time.
        cv_.wait_for(l, kSyncWait, [&] {
          auto w = objects_.find(key);
          return stop_ || w == objects_.end() || w->second.synced;
        });
        it = objects_.find(key);
        if (it != objects_.end() && it->second.synced) {
          if (!it->second.object) return absl::NotFoundError(resource + " \"" + name + "\" not found");
          return *it->second.object;
        }
      }
    }
    return fallback_->Get(resource, ns, name);
  }

  absl::StatusOr<std::vector<json>> Services(const std::string& ns, bool may_wait) override {
    return fallback_->Services(ns, may_wait);
  }

  void RegisterPod(const api::Pod& pod) override {
    std::set<std::string> refs = ReferencedObjects(pod);
    std::lock_guard<std::mutex> l(mu_);
    std::set<std::string>& had = pods_[pod.metadata.uid];
    for (const auto& key : refs)
      if (!had.count(key)) Ref(key, pod.metadata.uid);
    for (const auto& key : had)
      if (!refs.count(key)) Unref(key, pod.metadata.uid);
    had = refs;
    if (had.empty()) pods_.erase(pod.metadata.uid);
  }

  void UnregisterPod(const std::string& uid) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = pods_.find(uid);
    if (it == pods_.end()) return;
    for (const auto& key : it->second) Unref(key, uid);
    pods_.erase(it);
  }

  void SetOnChange(std::function<void(const std::vector<std::string>&)> fn) override {
    std::lock_guard<std::mutex> l(mu_);
    on_change_ = std::move(fn);
  }

  size_t WatchCount() const override {
    std::lock_guard<std::mutex> l(mu_);
    return objects_.size();
  }

 private:
  struct Watched {
    std::unique_ptr<client::Reflector> reflector;
    std::set<std::string> pods;
    bool synced = false;
    std::optional<json> object;
  };

  // Under mu_.
  void Ref(const std::string& key, const std::string& uid) {
    Watched& w = objects_[key];
    w.pods.insert(uid);
    if (w.reflector) return;
    size_t a = key.find('/'), b = key.find('/', a + 1);
    std::string resource = key.substr(0, a), ns = key.substr(a + 1, b - a - 1), name = key.substr(b + 1);
    w.reflector = std::make_unique<client::Reflector>(
        api_, "/api/v1/namespaces/" + ns + "/" + resource, "fieldSelector=metadata.name%3D" + name, resource + " " + ns + "/" + name,
        [this, key](const client::Reflector::Store& store) { OnStore(key, store); });
    w.reflector->Start();
  }
  void Unref(const std::string& key, const std::string& uid) {
    auto it = objects_.find(key);
    if (it == objects_.end()) return;
    it->second.pods.erase(uid);
    if (!it->second.pods.empty()) return;
    if (it->second.reflector) stopping_.push_back(std::move(it->second.reflector));
    objects_.erase(it);
    janitor_cv_.notify_all();
  }

  void OnStore(const std::string& key, const client::Reflector::Store& store) {
    std::vector<std::string> uids;
    std::function<void(const std::vector<std::string>&)> notify;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = objects_.find(key);
      if (it == objects_.end()) return;
      Watched& w = it->second;
      std::optional<json> now;
      if (!store.empty()) now = store.begin()->second;
      bool changed = !w.synced || now.has_value() != w.object.has_value() ||
                     (now && api::MetaField(*now, "resourceVersion") != api::MetaField(*w.object, "resourceVersion"));
      bool first = !w.synced;
      w.object = std::move(now);
      w.synced = true;
      if (changed && !first) {
        uids.assign(w.pods.begin(), w.pods.end());
        notify = on_change_;
      }
    }
    cv_.notify_all();
    if (notify && !uids.empty()) notify(uids);
  }

  void Janitor() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      janitor_cv_.wait(l, [this] { return stop_ || !stopping_.empty(); });
      while (!stopping_.empty()) {
        std::deque<std::unique_ptr<client::Reflector>> batch;
        batch.swap(stopping_);
        l.unlock();
        for (auto& r : batch) r->RequestStop();  // they all wind down at once
        batch.clear();                           // and are joined
        l.lock();
      }
      if (stop_) return;
    }
  }

  client::ApiClient* api_;
  std::unique_ptr<EnvSource> fallback_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::condition_variable cv_, janitor_cv_;
  bool stop_ = false;
  std::map<std::string, Watched> objects_;               // "resource/ns/name": bounded by the pods' references
  std::map<std::string, std::set<std::string>> pods_;    // pod UID -> its references
  std::deque<std::unique_ptr<client::Reflector>> stopping_;
  std::function<void(const std::vector<std::string>&)> on_change_;
  std::thread janitor_;
};

}  // namespace

std::set<std::string> ReferencedObjects(const api::Pod& pod) {
  std::set<std::string> out;
  if (pod.raw.is_object() && pod.raw.contains("spec")) Visit(pod.raw["spec"], pod.metadata.namespace_, &out);
  return out;
}

std::unique_ptr<EnvSource> NewWatchBasedEnvSource(client::ApiClient* api, std::unique_ptr<EnvSource> fallback) {
  return std::make_unique<WatchBasedEnvSource>(api, std::move(fallback));
}

}  // namespace kubelet::kuberuntime
