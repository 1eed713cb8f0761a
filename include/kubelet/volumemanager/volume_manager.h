#pragma once
// Prepares the volumes a pod's containers mount and tears them down when the
// pod goes: hostPath, emptyDir (disk or tmpfs), and the API-backed kinds
// configMap, secret, downwardAPI and projected (with service account tokens
// from the TokenRequest API), at upstream's paths
// <pods-dir>/<uid>/volumes/kubernetes.io~<plugin>/<name>. The API-backed
// kinds are written with the atomic writer, so a later call brings updates in
// without a container seeing a half-written file; secret and projected
// volumes live on tmpfs.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"
#include "kubelet/util/clock.h"

namespace kubelet::volumemanager {

class VolumeManager {
 public:
  virtual ~VolumeManager() = default;
  /**
   * Makes every volume of the pod ready, or brings an API-backed volume's content up to date; returns volume name
   * -> host path. Errors read like upstream's FailedMount messages ("MountVolume.SetUp failed for volume ...").
   */
  virtual absl::StatusOr<std::map<std::string, std::string>> MountVolumesForPod(const api::Pod& pod) = 0;
  /** Unmounts and removes what MountVolumesForPod made for this pod UID. */
  virtual absl::Status UnmountVolumesForPod(const std::string& uid) = 0;
};

/** What the API-backed kinds read. Unset functions: those kinds fail with a clear error. */
struct VolumeDeps {
  /** A configmaps/secrets object by name; NotFound when it does not exist. */
  std::function<absl::StatusOr<nlohmann::json>(const std::string& resource, const std::string& ns, const std::string& name)>
      get_object;
  /** POST .../namespaces/<ns>/serviceaccounts/<name>/token with this TokenRequest; the API's answer. */
  std::function<absl::StatusOr<nlohmann::json>(const std::string& ns, const std::string& service_account,
                                               const nlohmann::json& token_request)>
      request_token;
  /** Node allocatable (milli-CPU, bytes) for resourceFieldRef of containers without limits. */
  std::function<std::pair<int64_t, int64_t>()> node_allocatable;
  const Clock* clock = nullptr;  // token expiry; the real clock when unset
  /** Mount tmpfs for secret and projected volumes (off where the process may not mount, e.g. unprivileged tests). */
  bool tmpfs_for_secrets = true;
};

/** pods_dir is <root-dir>/pods. */
std::unique_ptr<VolumeManager> NewVolumeManager(const std::string& pods_dir, VolumeDeps deps = {});

/**
 * Upstream's token manager: TokenRequest answers cached by (namespace, service account, audience, expiration, pod
 * UID); a token is requested again when it is older than 80% of its lifetime or than 24 h. Bounded: a pod's
 * entries go when the pod's volumes are torn down.
 */
class TokenManager {
 public:
  explicit TokenManager(VolumeDeps* deps) : deps_(deps) {}
  absl::StatusOr<std::string> GetServiceAccountToken(const api::Pod& pod, const api::ServiceAccountTokenProjection& p);
  void DeleteServiceAccountTokens(const std::string& pod_uid);
  size_t size() const;

 private:
  struct Entry {
    std::string token;
    TimePoint expires;
    int64_t expiration_seconds = 0;
    std::string pod_uid;
  };
  bool RequiresRefresh(const Entry& e, TimePoint now) const;
  VolumeDeps* deps_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> cache_;
};

}  // namespace kubelet::volumemanager
