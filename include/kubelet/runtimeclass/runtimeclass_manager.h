#pragma once
// The RuntimeClass manager (upstream's pkg/kubelet/runtimeclass): an informer on the cluster's RuntimeClasses
// (node.k8s.io/v1, which RBAC's system:node may get, list and watch) and the lookup of a pod's runtime handler, which
// the runtime manager passes to RunPodSandbox.
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace kubelet::client {
class ApiClient;
class Reflector;
}  // namespace kubelet::client

namespace kubelet::runtimeclass {

/** How many RuntimeClasses are kept; more are reported and left out. */
inline constexpr size_t kMaxRuntimeClasses = 4096;

class RuntimeClassManager {
 public:
  virtual ~RuntimeClassManager() = default;
  /** The handler of the named class; "" for no name (the runtime's default). A class the API does not have:
   *  NotFound `runtimeclasses.node.k8s.io "<name>" not found`; before the first list: Unavailable. */
  virtual absl::StatusOr<std::string> LookupRuntimeHandler(const std::string& name) const = 0;
};

/** From the informer's store (by UID): name -> handler; an object without a name or a handler is reported and left out. */
class RuntimeClassStore : public RuntimeClassManager {
 public:
  absl::StatusOr<std::string> LookupRuntimeHandler(const std::string& name) const override;
  /** Replaces what is known; returns one error text per object left out. */
  std::vector<std::string> Replace(const std::map<std::string, nlohmann::json>& objects);

 private:
  mutable std::mutex mu_;
  bool synced_ = false;
  std::map<std::string, std::string> handlers_;
};

/** The informer: lists and watches /apis/node.k8s.io/v1/runtimeclasses (the reflector's back-off and re-lists). */
class RuntimeClassInformer : public RuntimeClassStore {
 public:
  explicit RuntimeClassInformer(client::ApiClient* api);
  ~RuntimeClassInformer() override;
  void Start();
  void Stop();

 private:
  client::ApiClient* api_;
  std::unique_ptr<client::Reflector> reflector_;
  std::set<std::string> reported_;  // the reflector's thread only
};

}  // namespace kubelet::runtimeclass
