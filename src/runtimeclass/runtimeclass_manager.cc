#include "kubelet/runtimeclass/runtimeclass_manager.h"

#include <set>

#include <absl/status/status.h>

#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/reflector.h"
#include "kubelet/util/logging.h"

namespace kubelet::runtimeclass {

absl::StatusOr<std::string> RuntimeClassStore::LookupRuntimeHandler(const std::string& name) const {
  if (name.empty()) return std::string();  // the default class: the runtime's default handler
  std::lock_guard<std::mutex> l(mu_);
  if (!synced_) return absl::UnavailableError("RuntimeClass cache not yet synced, looking up runtimeclasses.node.k8s.io \"" + name + "\"");
  auto it = handlers_.find(name);
  if (it == handlers_.end()) return absl::NotFoundError("runtimeclasses.node.k8s.io \"" + name + "\" not found");
  return it->second;
}

std::vector<std::string> RuntimeClassStore::Replace(const std::map<std::string, nlohmann::json>& objects) {
  std::vector<std::string> skipped;
  std::map<std::string, std::string> handlers;
  for (const auto& [uid, obj] : objects) {
    std::string name = api::MetaField(obj, "name");
    const auto h = obj.is_object() ? obj.find("handler") : obj.end();
    if (name.empty() || h == obj.end() || !h->is_string() || h->get<std::string>().empty()) {
      skipped.push_back("RuntimeClass \"" + name + "\" (uid " + uid + ") has no handler, ignored");
      continue;
    }
    if (handlers.size() >= kMaxRuntimeClasses) {
      skipped.push_back("RuntimeClass \"" + name + "\" ignored: more than " + std::to_string(kMaxRuntimeClasses) + " RuntimeClasses");
      continue;
    }
    handlers[name] = h->get<std::string>();
  }
  std::lock_guard<std::mutex> l(mu_);
  handlers_ = std::move(handlers);
  synced_ = true;
  return skipped;
}

RuntimeClassInformer::RuntimeClassInformer(client::ApiClient* api) : api_(api) {}
RuntimeClassInformer::~RuntimeClassInformer() { Stop(); }

void RuntimeClassInformer::Start() {
  auto log = log::Get("runtimeclass");
  reflector_ = std::make_unique<client::Reflector>(
      api_, "/apis/node.k8s.io/v1/runtimeclasses", "", "runtimeclasses", [this, log](const client::Reflector::Store& objects) {
        // Reported once per text (on the reflector's thread): the store comes again after every watch event.
        if (reported_.size() > 1024) reported_.clear();
        for (const auto& why : Replace(objects))
          if (reported_.insert(why).second) log->error("Invalid RuntimeClass err=\"{}\"", why);
      });
  reflector_->Start();
}

void RuntimeClassInformer::Stop() {
  if (reflector_) reflector_->Stop();
}

}  // namespace kubelet::runtimeclass
