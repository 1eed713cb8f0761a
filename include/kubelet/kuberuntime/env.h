#pragma once
// A container's environment as upstream's makeEnvironmentVariables builds it:
// envFrom (ConfigMaps, Secrets, with prefix), env with valueFrom
// (configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef) and $(VAR)
// expansion, and the service link variables of enableServiceLinks.
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"

namespace kubelet::client {
class ApiClient;
}

namespace kubelet::kuberuntime {

/** Where referenced objects come from: the API server, or nothing (standalone). */
class EnvSource {
 public:
  virtual ~EnvSource() = default;
  /** The object (configmaps, secrets) or NotFound. */
  virtual absl::StatusOr<nlohmann::json> Get(const std::string& resource, const std::string& ns, const std::string& name) = 0;
  /** Services of a namespace (for service links); empty when there is no API server. Without `may_wait`, only what
   * was already read (a static pod never waits for the API server). */
  virtual absl::StatusOr<std::vector<nlohmann::json>> Services(const std::string& ns, bool may_wait = true) = 0;
  /**
   * The ConfigMaps and Secrets the pod references are kept current for it (the Watch strategy: one watch per
   * object, shared by the pods that use it, stopped when the last one goes). No-op for the other strategies.
   */
  virtual void RegisterPod(const api::Pod& pod) { (void)pod; }
  virtual void UnregisterPod(const std::string& uid) { (void)uid; }
  /** Called (on a watch's thread) when a watched object changes, with the UIDs of the pods that reference it. */
  virtual void SetOnChange(std::function<void(const std::vector<std::string>& pod_uids)> fn) { (void)fn; }
  /** Objects watched now (the Watch strategy). */
  virtual size_t WatchCount() const { return 0; }
};

/** "configmaps/<ns>/<name>" and "secrets/<ns>/<name>" for every ConfigMap and Secret the pod's spec references. */
std::set<std::string> ReferencedObjects(const api::Pod& pod);

/**
 * configMapAndSecretChangeDetectionStrategy Watch, as upstream's watch-based manager: a registered pod's objects
 * are read from per-object reflectors (fieldSelector metadata.name=<name>, which the Node authorizer allows for
 * objects the node's pods reference); reads of anything else, and of an object whose watch has not listed within
 * a short wait, go to `fallback`. Services always come from `fallback`.
 */
std::unique_ptr<EnvSource> NewWatchBasedEnvSource(client::ApiClient* api, std::unique_ptr<EnvSource> fallback);

struct PodEnvContext {
  std::string host_ip;
  std::vector<std::string> pod_ips;
  int64_t node_allocatable_milli_cpu = 0;
  int64_t node_allocatable_memory = 0;
};

/** Replaces $(VAR) with values from env, leaving unknown references as written; $$ escapes a dollar. */
std::string ExpandEnv(const std::string& in, const std::map<std::string, std::string>& env);

/**
 * Reads ConfigMaps, Secrets and Services from the API server on demand. An
 * answer is reused for `fresh_for` (0: every read goes to the server); when
 * the server cannot be reached the last answer is used, however old.
 */
std::unique_ptr<EnvSource> NewAPIEnvSource(client::ApiClient* api, Duration fresh_for = std::chrono::seconds(5));
/** fresh_for for configMapAndSecretChangeDetectionStrategy: Get 0, Cache 1 min (upstream's default TTL), Watch 5 s. */
Duration EnvFreshness(const std::string& change_detection_strategy);

/** The ordered KEY=VALUE list for the container; errors read like upstream's CreateContainerConfigError messages. */
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MakeEnvironment(const api::Pod& pod, const api::Container& c,
                                                                                EnvSource* source, const PodEnvContext& ctx);

}  // namespace kubelet::kuberuntime
