#pragma once
// Upstream's CSI volume plugin (pkg/volume/csi), as the kubelet's side of the Container Storage
// Interface: the store of registered drivers (filled by the plugin manager through CSIPluginHandler),
// the node info manager that writes the node's CSINode object, nodeid annotation and topology
// labels, a gRPC client of a driver's Node service with a deadline on every call, and the set-up and
// tear-down of CSI volumes (persistent ones through a PV, inline ephemeral ones from the pod spec)
// at upstream's paths:
//   staging: <root-dir>/plugins/kubernetes.io/csi/<driver>/<sha256(volume handle)>/globalmount
//   publish: <root-dir>/pods/<uid>/volumes/kubernetes.io~csi/<pv or volume name>/mount
// with vol_data.json beside each, so a restarted kubelet finds what it set up.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"
#include "kubelet/pluginmanager/plugin_manager.h"

namespace kubelet::client {
class ApiClient;
}

namespace kubelet::volumemanager {

inline constexpr char kCSIPluginName[] = "kubernetes.io/csi";
inline constexpr char kCSINodeIDAnnotation[] = "csi.volume.kubernetes.io/nodeid";
/** Upstream's csiTimeout: the deadline of the set-up and tear-down calls. */
inline constexpr std::chrono::milliseconds kCSITimeout{2 * 60 * 1000};

/** A driver's Node service capabilities (NodeGetCapabilities). */
struct CSINodeCapabilities {
  bool stage_unstage = false;
  bool get_volume_stats = false;
  bool expand = false;
  bool volume_condition = false;
  bool single_node_multi_writer = false;
  bool volume_mount_group = false;
};

struct CSINodeInfo {
  std::string node_id;
  int64_t max_volumes = 0;
  std::map<std::string, std::string> topology;
};

struct CSIVolumeUsage {
  int64_t available_bytes = -1, capacity_bytes = -1, used_bytes = -1;
  int64_t inodes_free = -1, inodes = -1, inodes_used = -1;
  bool has_condition = false;  // the driver offers VOLUME_CONDITION and answered one
  bool abnormal = false;
  std::string condition_message;
};

/** The calls the kubelet makes to a driver's Node service; every call carries the deadline it is given. */
class CSIClient {
 public:
  virtual ~CSIClient() = default;
  struct Capability {
    bool block = false;
    std::string fs_type;
    std::vector<std::string> mount_flags;
    int access_mode = 1;  // csi.v1 VolumeCapability.AccessMode.Mode
    std::string mount_group;
  };
  virtual absl::StatusOr<CSINodeInfo> NodeGetInfo(std::chrono::milliseconds timeout) = 0;
  virtual absl::StatusOr<CSINodeCapabilities> NodeGetCapabilities(std::chrono::milliseconds timeout) = 0;
  virtual absl::Status NodeStageVolume(const std::string& volume_id, const std::map<std::string, std::string>& publish_context,
                                       const std::string& staging_path, const Capability& cap,
                                       const std::map<std::string, std::string>& secrets,
                                       const std::map<std::string, std::string>& volume_context, std::chrono::milliseconds timeout) = 0;
  virtual absl::Status NodeUnstageVolume(const std::string& volume_id, const std::string& staging_path,
                                         std::chrono::milliseconds timeout) = 0;
  virtual absl::Status NodePublishVolume(const std::string& volume_id, const std::map<std::string, std::string>& publish_context,
                                         const std::string& staging_path, const std::string& target_path, const Capability& cap,
                                         bool read_only, const std::map<std::string, std::string>& secrets,
                                         const std::map<std::string, std::string>& volume_context,
                                         std::chrono::milliseconds timeout) = 0;
  virtual absl::Status NodeUnpublishVolume(const std::string& volume_id, const std::string& target_path,
                                           std::chrono::milliseconds timeout) = 0;
  virtual absl::StatusOr<CSIVolumeUsage> NodeGetVolumeStats(const std::string& volume_id, const std::string& volume_path,
                                                            const std::string& staging_path, std::chrono::milliseconds timeout) = 0;
  virtual absl::StatusOr<int64_t> NodeExpandVolume(const std::string& volume_id, const std::string& volume_path,
                                                   const std::string& staging_path, int64_t required_bytes, const Capability& cap,
                                                   std::chrono::milliseconds timeout) = 0;
};

/** A gRPC client of the driver at `endpoint` (a unix socket path, or unix://...). */
std::unique_ptr<CSIClient> NewGrpcCSIClient(const std::string& endpoint);

/**
 * The registered CSI drivers by name (upstream's csiDrivers store), each with its endpoint and a client kept
 * for it. Thread-safe.
 */
class CSIDriverStore {
 public:
  using ClientFactory = std::function<std::unique_ptr<CSIClient>(const std::string& endpoint)>;
  explicit CSIDriverStore(ClientFactory factory = NewGrpcCSIClient) : factory_(std::move(factory)) {}
  void Set(const std::string& name, const std::string& endpoint, const std::string& version);
  void Remove(const std::string& name, const std::string& endpoint);
  bool Has(const std::string& name) const;
  std::vector<std::string> Names() const;
  /** The driver's client; upstream's error when it is not registered. */
  absl::StatusOr<std::shared_ptr<CSIClient>> Client(const std::string& name) const;

 private:
  struct Driver {
    std::string endpoint, version;
    std::shared_ptr<CSIClient> client;
  };
  ClientFactory factory_;
  mutable std::mutex mu_;
  std::map<std::string, Driver> drivers_;
};

/**
 * Upstream's nodeinfomanager: the node's CSINode object (storage.k8s.io/v1, spec.drivers[] with name, nodeID,
 * topologyKeys, allocatable.count, owned by the Node), the csi.volume.kubernetes.io/nodeid annotation (a JSON map
 * driver -> node ID) and the drivers' topology segments as node labels. Writes retry on conflicts.
 */
class NodeInfoManager {
 public:
  NodeInfoManager(client::ApiClient* api, std::string node_name) : api_(api), node_(std::move(node_name)) {}
  absl::Status InstallCSIDriver(const std::string& driver, const CSINodeInfo& info);
  absl::Status UninstallCSIDriver(const std::string& driver);

 private:
  absl::Status UpdateNode(const std::string& driver, const CSINodeInfo* info);
  absl::Status UpdateCSINode(const std::string& driver, const CSINodeInfo* info);
  client::ApiClient* api_;
  std::string node_;
};

/**
 * The plugin manager's handler for type CSIPlugin: a driver speaking CSI 1.x is asked NodeGetInfo and put in the
 * store, and the node info manager records it; deregistration undoes both.
 */
class CSIPluginHandler : public pluginmanager::PluginHandler {
 public:
  CSIPluginHandler(CSIDriverStore* store, NodeInfoManager* node_info) : store_(store), node_info_(node_info) {}
  absl::Status ValidatePlugin(const std::string& name, const std::string& endpoint, const std::vector<std::string>& versions) override;
  absl::Status RegisterPlugin(const std::string& name, const std::string& endpoint, const std::vector<std::string>& versions,
                              std::chrono::milliseconds timeout) override;
  void DeRegisterPlugin(const std::string& name, const std::string& endpoint) override;

 private:
  CSIDriverStore* store_;
  NodeInfoManager* node_info_;  // may be null (no API server)
};

/** The highest CSI version of `versions` this kubelet speaks (1.x), or upstream's error. */
absl::StatusOr<std::string> HighestSupportedCSIVersion(const std::vector<std::string>& versions);

/** Upstream's names: the VolumeAttachment of a volume on a node, and the unique volume name (volumesInUse). */
/**
 * A CSI driver name as the API validates it (CSIDriver, PV spec.csi.driver): 63 characters at most, alphanumerics
 * with '-', '_' and '.' between, starting and ending with an alphanumeric. Driver names become folder names.
 */
bool IsValidCSIDriverName(const std::string& name);
std::string CSIAttachmentID(const std::string& volume_handle, const std::string& driver, const std::string& node);
std::string CSIUniqueVolumeName(const std::string& driver, const std::string& volume_handle);
/** The staging folder of a volume under <root-dir>. */
std::string CSIStagingPath(const std::string& root_dir, const std::string& driver, const std::string& volume_handle);
/** The volume handle of an inline ephemeral volume (upstream's makeVolumeHandle). */
std::string CSIEphemeralVolumeHandle(const std::string& pod_uid, const std::string& volume_name);

/** What the CSI volumes read from the API and the node. */
struct CSIDeps {
  CSIDriverStore* drivers = nullptr;
  std::string root_dir;   // <root-dir>
  std::string node_name;
  /** A namespaced or cluster-scoped object: "secrets", "csidrivers", "volumeattachments"; NotFound when absent. */
  std::function<absl::StatusOr<nlohmann::json>(const std::string& resource, const std::string& ns, const std::string& name)>
      get_object;
  /** A service account token for the pod (the CSIDriver's tokenRequests): token and expirationTimestamp. */
  std::function<absl::StatusOr<std::pair<std::string, std::string>>(const api::Pod& pod, const std::string& audience,
                                                                    int64_t expiration_seconds)>
      token;
  std::chrono::milliseconds timeout = kCSITimeout;
  /** The Node's status.volumesAttached (unique names); unset or nullopt: not checked (standalone, tests). */
  std::function<std::optional<std::vector<std::string>>()> volumes_attached;
};

/** A CSI volume as its pod uses it: from the PV (persistent) or the pod spec (inline, ephemeral). */
struct CSIVolumeSpec {
  std::string spec_name;  // the PV's name, or the pod volume's name when inline
  std::string driver;
  std::string volume_handle;
  bool read_only = false;
  std::string fs_type;
  std::vector<std::string> mount_options;
  std::map<std::string, std::string> volume_attributes;
  std::optional<std::pair<std::string, std::string>> node_stage_secret;    // namespace, name
  std::optional<std::pair<std::string, std::string>> node_publish_secret;  // namespace, name
  std::string access_mode = "ReadWriteOnce";
  bool ephemeral = false;
  bool block = false;
};

/** The PV's spec.csi (or the pod volume's csi) as a CSIVolumeSpec, or why it cannot be one. */
absl::StatusOr<CSIVolumeSpec> CSIVolumeFromPV(const nlohmann::json& pv, bool claim_read_only);
absl::StatusOr<CSIVolumeSpec> CSIVolumeFromInline(const api::Pod& pod, const api::Volume& v);

/** A set-up or tear-down failure: the message upstream's operation generator reports (FailedMount). */
struct CSIResult {
  absl::Status status;
  bool unattached = false;  // waiting for the VolumeAttachment
};

/**
 * Sets up and tears down CSI volumes: at most one operation on a volume at a time (two pods sharing one volume
 * stage it once), a failed call leaves no folder or mount it made behind, and a driver that is gone makes
 * tear-down wait (it never removes a folder that is still mounted).
 */
class CSIVolumes {
 public:
  explicit CSIVolumes(CSIDeps deps) : d_(std::move(deps)) {}
  /**
   * Stages (when the driver does) and publishes the volume for the pod's volume `pod_volume_name`; the published
   * path. *unattached: waiting for the VolumeAttachment; *attachable: the driver needs one (volumesInUse).
   */
  absl::StatusOr<std::string> SetUp(const api::Pod& pod, const CSIVolumeSpec& spec, const std::string& pod_volume_name,
                                    bool* unattached, bool* attachable);
  /** Unpublishes every CSI volume of the pod folder, and unstages those no other pod uses. */
  absl::Status TearDownPod(const std::string& pod_uid);
  /** True when <pods>/<uid>/volumes/kubernetes.io~csi/<name> holds a published volume (reconstruction). */
  bool IsPublished(const std::string& pod_uid, const std::string& spec_name) const;
  /**
   * NodeExpandVolume of a published volume to `required_bytes` (online expansion, after the controller grew the
   * PV): false when the driver does not offer EXPAND_VOLUME. Errors read as upstream's ("MountVolume.NodeExpandVolume
   * failed for volume ...").
   */
  absl::StatusOr<bool> Expand(const api::Pod& pod, const CSIVolumeSpec& spec, int64_t required_bytes);
  /** The CSIDriver asks for NodePublishVolume at every sync (requiresRepublish): known once the volume was set up. */
  bool RequiresRepublish(const std::string& driver) const;
  /** NodeGetVolumeStats of a published volume, when the driver offers it (NotFound otherwise). */
  absl::StatusOr<CSIVolumeUsage> VolumeStats(const std::string& pod_uid, const std::string& spec_name);
  /** Volumes whose staging this process did (or found) and still holds: for the tests' bounded-maps checks. */
  size_t StagedCount() const;

 private:
  std::string PodCSIDir(const std::string& uid) const { return d_.root_dir + "/pods/" + uid + "/volumes/kubernetes.io~csi"; }
  std::shared_ptr<std::mutex> VolumeLock(const std::string& key);
  std::string TrustedStagingPath(const nlohmann::json& vol_data) const;
  absl::Status TearDownOne(const std::string& pod_uid, const std::string& dir);
  bool OtherPodUses(const std::string& pod_uid, const std::string& driver, const std::string& handle) const;
  absl::StatusOr<std::map<std::string, std::string>> ReadSecret(const std::optional<std::pair<std::string, std::string>>& ref,
                                                                const std::string& what);

  CSIDeps d_;
  mutable std::mutex mu_;
  std::map<std::string, std::weak_ptr<std::mutex>> locks_;  // per volume; pruned when unused
  std::set<std::string> staged_;                            // driver^handle staged by this process
  std::map<std::string, bool> republish_;                   // driver -> requiresRepublish, as its CSIDriver last said
};

}  // namespace kubelet::volumemanager
