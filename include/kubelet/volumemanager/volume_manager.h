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
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"
#include "kubelet/util/clock.h"

namespace kubelet::volumemanager {

class CSIVolumes;

/** A volume as the pod's containers mount it. */
struct MountedVolume {
  MountedVolume() = default;
  MountedVolume(std::string p, bool ro, std::string unique = "", std::string driver = "")
      : path(std::move(p)), read_only(ro), unique_name(std::move(unique)), csi_driver(std::move(driver)) {}
  std::string path;
  bool read_only = false;  // a read-only claim: every mount of it is read-only
  std::string unique_name; // attachable volumes (CSI with attach): kubernetes.io/csi/<driver>^<handle>
  std::string csi_driver;  // CSI volumes: the driver that published it
};
using PodVolumes = std::map<std::string, MountedVolume>;

/** A mounted volume whose usage the driver can report (CSI), for the stats of /stats/summary and /metrics. */
struct VolumeStatsTarget {
  std::string pod_uid, pod_namespace, pod_name;
  std::string name;          // the pod's volume name
  std::string pvc_name;      // set when the volume is a claim
  std::string csi_spec_name; // the kubernetes.io~csi folder: the PV name, or the pod's volume name when inline
};

/** Upstream's podAttachAndMountTimeout. */
inline constexpr std::chrono::milliseconds kPodAttachAndMountTimeout{2 * 60 * 1000 + 3000};

/**
 * Upstream's volume manager: a desired state of the world (the pods being synced and their volumes), an actual
 * state (what is set up, reconstructed from <pods-dir> at Start), and a reconciler that sets up what is missing.
 * Each pod's set-up runs on its own operation thread, one at a time per pod, with exponential back-off (500 ms to
 * 2m2s) after a failure, so one pod's slow API object or token holds back no other pod.
 */
class VolumeManager {
 public:
  virtual ~VolumeManager() = default;
  /** Reconstructs the actual state from disk and starts the reconciler. */
  virtual void Start() {}
  virtual void Stop() {}
  /**
   * Puts the pod in the desired state, asks for its API-backed volumes' contents to be brought up to date
   * (upstream's remount on every sync) and waits until every volume is set up: at most `timeout`, and no longer
   * than the sync running on this thread is not cancelled. The error reads as upstream's: "unmounted volumes=[a b],
   * unattached volumes=[], failed to process volumes=[c]: timed out waiting for the condition"; each failed
   * set-up is reported as a FailedMount event by the reconciler.
   */
  virtual absl::StatusOr<PodVolumes> WaitForAttachAndMount(const api::Pod& pod,
                                                           std::chrono::milliseconds timeout = kPodAttachAndMountTimeout) = 0;
  /** An object the pod's volumes read changed: its contents are brought up to date now, not at the next sync. */
  virtual void RemountPod(const std::string& uid) { (void)uid; }
  /** Takes the pod out of the desired state, unmounts and removes everything under its folder. */
  virtual absl::Status UnmountVolumesForPod(const std::string& uid) = 0;
  /**
   * Attachable volumes in use (desired or mounted), unique names sorted, for the node's status.volumesInUse: the
   * CSI volumes whose driver needs an attachment.
   */
  virtual std::vector<std::string> GetVolumesInUse() const { return {}; }
  /** True once reconstruction and the reconciler's first round are done: volumesInUse is reported from then on. */
  virtual bool ReconcilerStatesHasBeenSynced() const { return true; }
  /** UIDs of the pods in the actual state (set up, or reconstructed from disk). */
  virtual std::vector<std::string> PodsWithVolumes() const { return {}; }
  /** The mounted CSI volumes of the desired pods, for their usage statistics. */
  virtual std::vector<VolumeStatsTarget> StatsTargets() const { return {}; }
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
  std::string node_name;         // in upstream's event messages (FileSystemResizeSuccessful), PV nodeAffinity fields
  /** The Node's labels as the API has them, for a PV's nodeAffinity; unset or nullopt: not checked (standalone). */
  std::function<std::optional<std::map<std::string, std::string>>()> node_labels;
  /** PATCH (merge) of a claim's status: capacity and conditions after a volume expansion on the node. */
  std::function<absl::Status(const std::string& ns, const std::string& name, const nlohmann::json& patch)> patch_pvc_status;
  /** Events on the pod (FailedMount), as the reconciler reports them; unset: logged only. */
  std::function<void(const api::Pod& pod, const std::string& type, const std::string& reason, const std::string& message)>
      record_event;
  /** CSI volumes (PVs with spec.csi, inline csi volumes); unset: those fail with a clear error. Not owned. */
  CSIVolumes* csi = nullptr;
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
