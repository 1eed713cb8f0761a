#include "kubelet/volumemanager/csi.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "csi/v1/csi.grpc.pb.h"
#include "kubelet/api/codec.h"
#include "kubelet/api/names.h"
#include "kubelet/client/api_client.h"
#include "kubelet/util/grpc_error.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/file.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/mount.h"

namespace kubelet::volumemanager {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Sha256Hex(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::shared_ptr<spdlog::logger> Log() {
  static auto l = log::Get("csi");
  return l;
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  // The message reads as a Go gRPC error, as upstream's events quote it.
  int code = static_cast<int>(s.error_code());
  std::string msg = GoGrpcError(s);
  return absl::Status(static_cast<absl::StatusCode>(code), msg);
}

void SetDeadline(grpc::ClientContext* ctx, std::chrono::milliseconds t) { ctx->set_deadline(std::chrono::system_clock::now() + t); }

void ToCapability(const CSIClient::Capability& c, csi::v1::VolumeCapability* out) {
  if (c.block) {
    out->mutable_block();
  } else {
    auto* m = out->mutable_mount();
    m->set_fs_type(c.fs_type);
    for (const auto& f : c.mount_flags) m->add_mount_flags(f);
    m->set_volume_mount_group(c.mount_group);
  }
  out->mutable_access_mode()->set_mode(static_cast<csi::v1::VolumeCapability_AccessMode_Mode>(c.access_mode));
}

template <typename M>
void PutMap(M* dst, const std::map<std::string, std::string>& src) {
  for (const auto& [k, v] : src) (*dst)[k] = v;
}

class GrpcCSIClient : public CSIClient {
 public:
  explicit GrpcCSIClient(const std::string& endpoint) {
    std::string target = endpoint.rfind("unix://", 0) == 0 ? endpoint : "unix://" + endpoint;
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    auto ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    node_ = csi::v1::Node::NewStub(ch);
  }

  absl::StatusOr<CSINodeInfo> NodeGetInfo(std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeGetInfoResponse r;
    if (auto st = FromGrpc(node_->NodeGetInfo(&ctx, {}, &r)); !st.ok()) return st;
    CSINodeInfo info;
    info.node_id = r.node_id();
    info.max_volumes = r.max_volumes_per_node();
    for (const auto& [k, v] : r.accessible_topology().segments()) info.topology[k] = v;
    return info;
  }

  absl::StatusOr<CSINodeCapabilities> NodeGetCapabilities(std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeGetCapabilitiesResponse r;
    if (auto st = FromGrpc(node_->NodeGetCapabilities(&ctx, {}, &r)); !st.ok()) return st;
    CSINodeCapabilities c;
    for (const auto& cap : r.capabilities()) {
      if (!cap.has_rpc()) continue;
      switch (cap.rpc().type()) {
        case csi::v1::NodeServiceCapability_RPC_Type_STAGE_UNSTAGE_VOLUME: c.stage_unstage = true; break;
        case csi::v1::NodeServiceCapability_RPC_Type_GET_VOLUME_STATS: c.get_volume_stats = true; break;
        case csi::v1::NodeServiceCapability_RPC_Type_EXPAND_VOLUME: c.expand = true; break;
        case csi::v1::NodeServiceCapability_RPC_Type_VOLUME_CONDITION: c.volume_condition = true; break;
        case csi::v1::NodeServiceCapability_RPC_Type_SINGLE_NODE_MULTI_WRITER: c.single_node_multi_writer = true; break;
        case csi::v1::NodeServiceCapability_RPC_Type_VOLUME_MOUNT_GROUP: c.volume_mount_group = true; break;
        default: break;  // a capability of a later spec: not used
      }
    }
    return c;
  }

  absl::Status NodeStageVolume(const std::string& volume_id, const std::map<std::string, std::string>& publish_context,
                               const std::string& staging_path, const Capability& cap, const std::map<std::string, std::string>& secrets,
                               const std::map<std::string, std::string>& volume_context, std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeStageVolumeRequest q;
    q.set_volume_id(volume_id);
    PutMap(q.mutable_publish_context(), publish_context);
    q.set_staging_target_path(staging_path);
    ToCapability(cap, q.mutable_volume_capability());
    PutMap(q.mutable_secrets(), secrets);
    PutMap(q.mutable_volume_context(), volume_context);
    csi::v1::NodeStageVolumeResponse r;
    return FromGrpc(node_->NodeStageVolume(&ctx, q, &r));
  }

  absl::Status NodeUnstageVolume(const std::string& volume_id, const std::string& staging_path, std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeUnstageVolumeRequest q;
    q.set_volume_id(volume_id);
    q.set_staging_target_path(staging_path);
    csi::v1::NodeUnstageVolumeResponse r;
    return FromGrpc(node_->NodeUnstageVolume(&ctx, q, &r));
  }

  absl::Status NodePublishVolume(const std::string& volume_id, const std::map<std::string, std::string>& publish_context,
                                 const std::string& staging_path, const std::string& target_path, const Capability& cap, bool read_only,
                                 const std::map<std::string, std::string>& secrets,
                                 const std::map<std::string, std::string>& volume_context, std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodePublishVolumeRequest q;
    q.set_volume_id(volume_id);
    PutMap(q.mutable_publish_context(), publish_context);
    q.set_staging_target_path(staging_path);
    q.set_target_path(target_path);
    ToCapability(cap, q.mutable_volume_capability());
    q.set_readonly(read_only);
    PutMap(q.mutable_secrets(), secrets);
    PutMap(q.mutable_volume_context(), volume_context);
    csi::v1::NodePublishVolumeResponse r;
    return FromGrpc(node_->NodePublishVolume(&ctx, q, &r));
  }

  absl::Status NodeUnpublishVolume(const std::string& volume_id, const std::string& target_path, std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeUnpublishVolumeRequest q;
    q.set_volume_id(volume_id);
    q.set_target_path(target_path);
    csi::v1::NodeUnpublishVolumeResponse r;
    return FromGrpc(node_->NodeUnpublishVolume(&ctx, q, &r));
  }

  absl::StatusOr<CSIVolumeUsage> NodeGetVolumeStats(const std::string& volume_id, const std::string& volume_path,
                                                    const std::string& staging_path, std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeGetVolumeStatsRequest q;
    q.set_volume_id(volume_id);
    q.set_volume_path(volume_path);
    q.set_staging_target_path(staging_path);
    csi::v1::NodeGetVolumeStatsResponse r;
    if (auto st = FromGrpc(node_->NodeGetVolumeStats(&ctx, q, &r)); !st.ok()) return st;
    CSIVolumeUsage u;
    for (const auto& x : r.usage()) {
      if (x.unit() == csi::v1::VolumeUsage_Unit_BYTES) {
        u.available_bytes = x.available();
        u.capacity_bytes = x.total();
        u.used_bytes = x.used();
      } else if (x.unit() == csi::v1::VolumeUsage_Unit_INODES) {
        u.inodes_free = x.available();
        u.inodes = x.total();
        u.inodes_used = x.used();
      }
    }
    if (r.has_volume_condition()) {
      u.has_condition = true;
      u.abnormal = r.volume_condition().abnormal();
      u.condition_message = r.volume_condition().message();
    }
    return u;
  }

  absl::StatusOr<int64_t> NodeExpandVolume(const std::string& volume_id, const std::string& volume_path, const std::string& staging_path,
                                           int64_t required_bytes, const Capability& cap, std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    csi::v1::NodeExpandVolumeRequest q;
    q.set_volume_id(volume_id);
    q.set_volume_path(volume_path);
    q.set_staging_target_path(staging_path);
    q.mutable_capacity_range()->set_required_bytes(required_bytes);
    ToCapability(cap, q.mutable_volume_capability());
    csi::v1::NodeExpandVolumeResponse r;
    if (auto st = FromGrpc(node_->NodeExpandVolume(&ctx, q, &r)); !st.ok()) return st;
    return r.capacity_bytes();
  }

 private:
  std::unique_ptr<csi::v1::Node::Stub> node_;
};

// The CSI access mode of a PV access mode (upstream's asCSIAccessModeV1, with the single-node modes when the
// driver offers them).
int AccessModeOf(const std::string& mode, bool single_node_multi_writer) {
  using AM = csi::v1::VolumeCapability_AccessMode;
  if (mode == "ReadOnlyMany") return AM::MULTI_NODE_READER_ONLY;
  if (mode == "ReadWriteMany") return AM::MULTI_NODE_MULTI_WRITER;
  if (mode == "ReadWriteOncePod") return single_node_multi_writer ? AM::SINGLE_NODE_SINGLE_WRITER : AM::SINGLE_NODE_WRITER;
  return single_node_multi_writer ? AM::SINGLE_NODE_MULTI_WRITER : AM::SINGLE_NODE_WRITER;
}

// Written beside and renamed over, so a reader never sees half a file; not fsynced, as upstream's saveVolumeData
// (an fsync per file was most of a lone pod's set-up time, kubelet_bench_csi).
absl::Status WriteFileAtomic(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return absl::InternalError("failed to save volume data file " + path + ": " + std::strerror(errno));
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError("failed to save volume data file " + path + ": " + std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ReadVolData(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return absl::DataLossError("volume data file " + path + " is not a JSON object");
  for (const char* k : {"driverName", "volumeHandle"})
    if (api::StringField(j, k).empty()) return absl::DataLossError("volume data file " + path + " has no " + k);
  return j;
}

// Removes what a failed set-up made: the folder (only when nothing is mounted on it), its volume data file and
// its parent when empty. Never removes through a mount.
void RemoveMountDir(const std::string& mount_dir, bool remove_parent) {
  if (mount::IsMountPoint(mount_dir)) return;
  std::error_code ec;
  if (fs::is_directory(mount_dir, ec) && fs::is_empty(mount_dir, ec)) fs::remove(mount_dir, ec);
  if (!remove_parent || fs::exists(mount_dir, ec)) return;
  std::string parent = fs::path(mount_dir).parent_path().string();
  fs::remove(parent + "/vol_data.json", ec);
  if (fs::is_directory(parent, ec) && fs::is_empty(parent, ec)) fs::remove(parent, ec);
}

std::string GoQuotedList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + std::string("\"") + v[i] + "\"";
  return out + "]";
}

std::map<std::string, std::string> StringMap(const json& j) {
  std::map<std::string, std::string> out;
  if (!j.is_object()) return out;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.value().is_string()) out[it.key()] = it.value().get<std::string>();
  return out;
}

std::optional<std::pair<std::string, std::string>> SecretRef(const json& csi, const char* field, const std::string& default_ns) {
  if (!csi.contains(field) || !csi[field].is_object()) return std::nullopt;
  std::string name = api::StringField(csi[field], "name");
  if (name.empty()) return std::nullopt;
  std::string ns = api::StringField(csi[field], "namespace");
  return std::make_pair(ns.empty() ? default_ns : ns, name);
}

}  // namespace

std::unique_ptr<CSIClient> NewGrpcCSIClient(const std::string& endpoint) { return std::make_unique<GrpcCSIClient>(endpoint); }

// ---- names ----

std::string CSIAttachmentID(const std::string& volume_handle, const std::string& driver, const std::string& node) {
  return "csi-" + Sha256Hex(volume_handle + driver + node);
}

std::string CSIUniqueVolumeName(const std::string& driver, const std::string& volume_handle) {
  return std::string(kCSIPluginName) + "/" + driver + "^" + volume_handle;
}

std::string CSIStagingPath(const std::string& root_dir, const std::string& driver, const std::string& volume_handle) {
  return root_dir + "/plugins/kubernetes.io/csi/" + driver + "/" + Sha256Hex(volume_handle) + "/globalmount";
}

std::string CSIEphemeralVolumeHandle(const std::string& pod_uid, const std::string& volume_name) {
  return "csi-" + Sha256Hex(pod_uid + volume_name);
}

absl::StatusOr<std::string> HighestSupportedCSIVersion(const std::vector<std::string>& versions) {
  if (versions.empty()) return absl::InvalidArgumentError("CSI driver reporting empty array for supported versions");
  std::string best;
  int best_minor = -1, best_patch = -1;
  for (const auto& v : versions) {
    std::string s = v.rfind("v", 0) == 0 ? v.substr(1) : v;
    int major = -1, minor = 0, patch = 0;
    if (std::sscanf(s.c_str(), "%d.%d.%d", &major, &minor, &patch) < 1) continue;
    if (major != 1) continue;
    if (minor > best_minor || (minor == best_minor && patch > best_patch)) {
      best = v;
      best_minor = minor;
      best_patch = patch;
    }
  }
  if (best.empty()) return absl::InvalidArgumentError("none of the CSI versions reported by this driver are supported");
  return best;
}

// ---- driver store ----

void CSIDriverStore::Set(const std::string& name, const std::string& endpoint, const std::string& version) {
  std::lock_guard<std::mutex> l(mu_);
  drivers_[name] = {endpoint, version, std::shared_ptr<CSIClient>(factory_(endpoint))};
}

void CSIDriverStore::Remove(const std::string& name, const std::string& endpoint) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = drivers_.find(name);
  // A re-registered driver (a new endpoint) is not removed by the old one's deregistration.
  if (it != drivers_.end() && (endpoint.empty() || it->second.endpoint == endpoint)) drivers_.erase(it);
}

bool CSIDriverStore::Has(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  return drivers_.count(name) > 0;
}

std::vector<std::string> CSIDriverStore::Names() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [n, d] : drivers_) out.push_back(n);
  return out;
}

absl::StatusOr<std::shared_ptr<CSIClient>> CSIDriverStore::Client(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = drivers_.find(name);
  if (it == drivers_.end()) return absl::NotFoundError("driver name " + name + " not found in the list of registered CSI drivers");
  return it->second.client;
}

// ---- node info manager ----

absl::Status NodeInfoManager::UpdateNode(const std::string& driver, const CSINodeInfo* info) {
  if (!api_) return absl::OkStatus();
  auto node = api_->Get("/api/v1/nodes/" + node_);
  if (!node.ok()) return absl::UnavailableError("error getting node " + node_ + ": " + std::string(node.status().message()));
  json ids = json::object();
  const json meta = node->value("metadata", json::object());
  if (meta.is_object() && meta.contains("annotations") && meta["annotations"].is_object()) {
    std::string cur = api::StringField(meta["annotations"], kCSINodeIDAnnotation);
    if (!cur.empty()) {
      json parsed = json::parse(cur, nullptr, false);
      if (parsed.is_object()) ids = parsed;
    }
  }
  if (info) {
    ids[driver] = info->node_id;
  } else {
    if (!ids.contains(driver)) return absl::OkStatus();
    ids.erase(driver);
  }
  json patch = {{"metadata", {{"annotations", {{kCSINodeIDAnnotation, ids.empty() ? json(nullptr) : json(ids.dump())}}}}}};
  if (info && !info->topology.empty()) {
    json labels = json::object();
    const json cur = meta.is_object() && meta.contains("labels") && meta["labels"].is_object() ? meta["labels"] : json::object();
    for (const auto& [k, v] : info->topology) {
      if (cur.contains(k) && cur[k].is_string() && cur[k].get<std::string>() != v)
        return absl::FailedPreconditionError("topology label " + k + " of node " + node_ + " is " + cur[k].get<std::string>() +
                                             ", the driver reports " + v);
      labels[k] = v;
    }
    patch["metadata"]["labels"] = labels;
  }
  auto r = api_->Patch("/api/v1/nodes/" + node_, patch, client::PatchType::kStrategicMerge);
  if (!r.ok()) return absl::UnavailableError("error updating node " + node_ + ": " + std::string(r.status().message()));
  return absl::OkStatus();
}

absl::Status NodeInfoManager::UpdateCSINode(const std::string& driver, const CSINodeInfo* info) {
  if (!api_) return absl::OkStatus();
  const std::string path = "/apis/storage.k8s.io/v1/csinodes/" + node_;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto cur = api_->Get(path);
    json entry;
    if (info) {
      json keys = json::array();
      for (const auto& [k, v] : info->topology) keys.push_back(k);
      entry = {{"name", driver}, {"nodeID", info->node_id}, {"topologyKeys", keys.empty() ? json(nullptr) : keys}};
      if (info->max_volumes > 0) entry["allocatable"] = {{"count", info->max_volumes}};
    }
    if (!cur.ok() && cur.status().code() == absl::StatusCode::kNotFound) {
      if (!info) return absl::OkStatus();
      // Owned by the Node, so it goes with it (as upstream's CreateCSINode).
      auto node = api_->Get("/api/v1/nodes/" + node_);
      if (!node.ok()) return absl::UnavailableError("error getting node " + node_ + ": " + std::string(node.status().message()));
      json obj = {{"apiVersion", "storage.k8s.io/v1"},
                  {"kind", "CSINode"},
                  {"metadata",
                   {{"name", node_},
                    {"ownerReferences",
                     json::array({{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", node_}, {"uid", api::MetaField(*node, "uid")}}})}}},
                  {"spec", {{"drivers", json::array({entry})}}}};
      auto made = api_->Create("/apis/storage.k8s.io/v1/csinodes", obj);
      if (made.ok()) return absl::OkStatus();
      if (client::StatusReason(made.status()) == "AlreadyExists") continue;
      return absl::UnavailableError("error creating CSINode " + node_ + ": " + std::string(made.status().message()));
    }
    if (!cur.ok()) return absl::UnavailableError("error getting CSINode " + node_ + ": " + std::string(cur.status().message()));
    json obj = *cur;
    if (!obj.is_object()) return absl::DataLossError("CSINode " + node_ + " is not an object");
    if (!obj.contains("spec") || !obj["spec"].is_object()) obj["spec"] = json::object();
    json drivers = json::array();
    bool same = false;
    if (obj["spec"].contains("drivers") && obj["spec"]["drivers"].is_array())
      for (const auto& d : obj["spec"]["drivers"]) {
        if (d.is_object() && api::StringField(d, "name") == driver) {
          same = info && d == entry;
          continue;
        }
        drivers.push_back(d);
      }
    if (same) return absl::OkStatus();
    if (info) drivers.push_back(entry);
    obj["spec"]["drivers"] = drivers;
    auto put = api_->Update(path, obj);
    if (put.ok()) return absl::OkStatus();
    if (client::StatusReason(put.status()) == "Conflict") continue;
    return absl::UnavailableError("error updating CSINode " + node_ + ": " + std::string(put.status().message()));
  }
  return absl::AbortedError("error updating CSINode " + node_ + ": conflicts on every attempt");
}

absl::Status NodeInfoManager::InstallCSIDriver(const std::string& driver, const CSINodeInfo& info) {
  if (auto st = UpdateNode(driver, &info); !st.ok()) return st;
  return UpdateCSINode(driver, &info);
}

absl::Status NodeInfoManager::UninstallCSIDriver(const std::string& driver) {
  if (auto st = UpdateCSINode(driver, nullptr); !st.ok()) return st;
  return UpdateNode(driver, nullptr);
}

// ---- plugin handler ----

absl::Status CSIPluginHandler::ValidatePlugin(const std::string& name, const std::string& endpoint,
                                              const std::vector<std::string>& versions) {
  Log()->info("Trying to validate a new CSI Driver with name: {} endpoint: {} versions: {}", name, endpoint, [&] {
    std::string all;
    for (const auto& v : versions) all += (all.empty() ? "" : ", ") + v;
    return all;
  }());
  if (!IsValidCSIDriverName(name))
    return absl::InvalidArgumentError("validation failed for CSI Driver " + name + " at endpoint " + endpoint +
                                      ": the name is not a valid CSI driver name");
  if (auto v = HighestSupportedCSIVersion(versions); !v.ok())
    return absl::InvalidArgumentError("validation failed for CSI Driver " + name + " at endpoint " + endpoint + ": " +
                                      std::string(v.status().message()));
  return absl::OkStatus();
}

absl::Status CSIPluginHandler::RegisterPlugin(const std::string& name, const std::string& endpoint,
                                              const std::vector<std::string>& versions, std::chrono::milliseconds timeout) {
  auto version = HighestSupportedCSIVersion(versions);
  if (!version.ok()) return version.status();
  store_->Set(name, endpoint, *version);
  auto client = store_->Client(name);
  if (!client.ok()) return client.status();
  auto info = (*client)->NodeGetInfo(timeout);
  if (!info.ok()) {
    store_->Remove(name, endpoint);
    return absl::UnavailableError("error during CSI NodeGetInfo() call: " + std::string(info.status().message()));
  }
  if (info->node_id.empty()) {
    store_->Remove(name, endpoint);
    return absl::InvalidArgumentError("error during CSI NodeGetInfo() call: the driver returned an empty node ID");
  }
  if (node_info_)
    if (auto st = node_info_->InstallCSIDriver(name, *info); !st.ok()) {
      store_->Remove(name, endpoint);
      return absl::UnavailableError("error updating CSINode object with CSI driver node info: " + std::string(st.message()));
    }
  Log()->info("Register new plugin with name: {} at endpoint: {}", name, endpoint);
  return absl::OkStatus();
}

void CSIPluginHandler::DeRegisterPlugin(const std::string& name, const std::string& endpoint) {
  Log()->info("DeRegistering CSI driver name=\"{}\" endpoint=\"{}\"", name, endpoint);
  store_->Remove(name, endpoint);
  if (node_info_ && !store_->Has(name))
    if (auto st = node_info_->UninstallCSIDriver(name); !st.ok())
      Log()->error("Failed to uninstall CSI driver from the node's objects driver=\"{}\" err=\"{}\"", name, st.message());
}

// ---- volume specs ----

bool IsValidCSIDriverName(const std::string& name) { return api::IsQualifiedNamePart(name); }

namespace {
// A name that becomes one folder under the pod's kubernetes.io~csi folder.
bool SafeFolderName(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos && n.find('\0') == std::string::npos;
}
}  // namespace

absl::StatusOr<CSIVolumeSpec> CSIVolumeFromPV(const json& pv, bool claim_read_only) {
  const json spec = pv.is_object() && pv.contains("spec") && pv["spec"].is_object() ? pv["spec"] : json::object();
  if (!spec.contains("csi") || !spec["csi"].is_object()) return absl::InvalidArgumentError("persistent volume has no spec.csi");
  const json& c = spec["csi"];
  CSIVolumeSpec s;
  s.spec_name = api::MetaField(pv, "name");
  s.driver = api::StringField(c, "driver");
  s.volume_handle = api::StringField(c, "volumeHandle");
  if (s.driver.empty()) return absl::InvalidArgumentError("persistent volume " + s.spec_name + ": spec.csi.driver is empty");
  if (s.volume_handle.empty()) return absl::InvalidArgumentError("persistent volume " + s.spec_name + ": spec.csi.volumeHandle is empty");
  if (!SafeFolderName(s.spec_name)) return absl::InvalidArgumentError("persistent volume \"" + s.spec_name + "\": not a valid name");
  if (!IsValidCSIDriverName(s.driver))
    return absl::InvalidArgumentError("persistent volume " + s.spec_name + ": spec.csi.driver \"" + s.driver + "\" is not a valid CSI driver name");
  s.read_only = claim_read_only || (c.contains("readOnly") && c["readOnly"].is_boolean() && c["readOnly"].get<bool>());
  s.fs_type = api::StringField(c, "fsType");
  s.volume_attributes = StringMap(c.value("volumeAttributes", json::object()));
  s.node_stage_secret = SecretRef(c, "nodeStageSecretRef", "");
  s.node_publish_secret = SecretRef(c, "nodePublishSecretRef", "");
  if (spec.contains("mountOptions") && spec["mountOptions"].is_array())
    for (const auto& o : spec["mountOptions"])
      if (o.is_string()) s.mount_options.push_back(o.get<std::string>());
  if (spec.contains("accessModes") && spec["accessModes"].is_array() && !spec["accessModes"].empty() && spec["accessModes"][0].is_string())
    s.access_mode = spec["accessModes"][0].get<std::string>();
  s.block = api::StringField(spec, "volumeMode") == "Block";
  return s;
}

absl::StatusOr<CSIVolumeSpec> CSIVolumeFromInline(const api::Pod& pod, const api::Volume& v) {
  if (!v.raw.is_object() || !v.raw.contains("csi") || !v.raw["csi"].is_object())
    return absl::InvalidArgumentError("volume \"" + v.name + "\" has no csi source");
  const json& c = v.raw["csi"];
  CSIVolumeSpec s;
  s.spec_name = v.name;
  s.driver = api::StringField(c, "driver");
  if (s.driver.empty()) return absl::InvalidArgumentError("volume \"" + v.name + "\": csi.driver is empty");
  if (!SafeFolderName(v.name)) return absl::InvalidArgumentError("volume \"" + v.name + "\": not a valid volume name");
  if (!IsValidCSIDriverName(s.driver))
    return absl::InvalidArgumentError("volume \"" + v.name + "\": csi.driver \"" + s.driver + "\" is not a valid CSI driver name");
  s.volume_handle = CSIEphemeralVolumeHandle(pod.metadata.uid, v.name);
  s.read_only = c.contains("readOnly") && c["readOnly"].is_boolean() && c["readOnly"].get<bool>();
  s.fs_type = api::StringField(c, "fsType");
  s.volume_attributes = StringMap(c.value("volumeAttributes", json::object()));
  s.node_publish_secret = SecretRef(c, "nodePublishSecretRef", pod.metadata.namespace_);
  s.ephemeral = true;
  return s;
}

// ---- set-up and tear-down ----

std::shared_ptr<std::mutex> CSIVolumes::VolumeLock(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = locks_.begin(); it != locks_.end();) it = it->second.expired() ? locks_.erase(it) : std::next(it);
  auto& w = locks_[key];
  auto m = w.lock();
  if (!m) {
    m = std::make_shared<std::mutex>();
    w = m;
  }
  return m;
}

size_t CSIVolumes::StagedCount() const {
  std::lock_guard<std::mutex> l(mu_);
  return staged_.size();
}

absl::StatusOr<std::map<std::string, std::string>> CSIVolumes::ReadSecret(
    const std::optional<std::pair<std::string, std::string>>& ref, const std::string& what) {
  std::map<std::string, std::string> out;
  if (!ref) return out;
  if (!d_.get_object) return absl::FailedPreconditionError("no API server to read the " + what + " secret from");
  auto s = d_.get_object("secrets", ref->first, ref->second);
  if (!s.ok())
    return absl::FailedPreconditionError("fetching " + what + " secret " + ref->first + "/" + ref->second + " failed: " +
                                         std::string(s.status().message()));
  if (s->is_object() && s->contains("data") && (*s)["data"].is_object())
    for (auto it = (*s)["data"].begin(); it != (*s)["data"].end(); ++it) {
      if (!it.value().is_string()) continue;
      auto raw = Base64Decode(it.value().get<std::string>());
      if (raw.ok()) out[it.key()] = *raw;
    }
  return out;
}

bool CSIVolumes::IsPublished(const std::string& pod_uid, const std::string& spec_name) const {
  std::string dir = PodCSIDir(pod_uid) + "/" + spec_name;
  return ReadVolData(dir + "/vol_data.json").ok() && mount::IsMountPoint(dir + "/mount");
}

absl::StatusOr<std::string> CSIVolumes::SetUp(const api::Pod& pod, const CSIVolumeSpec& spec, const std::string& pod_volume_name,
                                              bool* unattached, bool* attachable) {
  const std::string& uid = pod.metadata.uid;
  const std::string vol = "\"" + spec.spec_name + "\"";
  auto mount_failed = [&](const std::string& stage, const std::string& why) {
    return absl::FailedPreconditionError("MountVolume." + stage + " failed for volume " + vol + " : kubernetes.io/csi: " + why);
  };
  if (!d_.drivers) return mount_failed("SetUp", "no CSI driver store");
  auto client = d_.drivers->Client(spec.driver);
  if (!client.ok())
    return mount_failed(spec.ephemeral ? "SetUp" : "MountDevice",
                        std::string(spec.ephemeral ? "mounter.SetUpAt failed to get CSI client: " : "attacher.MountDevice failed to create newCsiDriverClient: ") +
                            std::string(client.status().message()));
  // The CSIDriver object: absent means upstream's defaults (attach required, no pod info, Persistent only).
  bool attach_required = true, pod_info = false, requires_republish = false;
  std::string fs_group_policy = "ReadWriteOnceWithFSType";
  std::vector<std::string> modes{"Persistent"};
  json token_requests = json::array();
  if (d_.get_object) {
    auto drv = d_.get_object("csidrivers", "", spec.driver);
    if (drv.ok() && drv->is_object() && drv->contains("spec") && (*drv)["spec"].is_object()) {
      const json& s = (*drv)["spec"];
      if (s.contains("attachRequired") && s["attachRequired"].is_boolean()) attach_required = s["attachRequired"].get<bool>();
      if (s.contains("podInfoOnMount") && s["podInfoOnMount"].is_boolean()) pod_info = s["podInfoOnMount"].get<bool>();
      if (s.contains("requiresRepublish") && s["requiresRepublish"].is_boolean()) requires_republish = s["requiresRepublish"].get<bool>();
      if (!api::StringField(s, "fsGroupPolicy").empty()) fs_group_policy = api::StringField(s, "fsGroupPolicy");
      if (s.contains("volumeLifecycleModes") && s["volumeLifecycleModes"].is_array() && !s["volumeLifecycleModes"].empty()) {
        modes.clear();
        for (const auto& m : s["volumeLifecycleModes"])
          if (m.is_string()) modes.push_back(m.get<std::string>());
      }
      if (s.contains("tokenRequests") && s["tokenRequests"].is_array()) token_requests = s["tokenRequests"];
    } else if (!drv.ok() && drv.status().code() != absl::StatusCode::kNotFound) {
      return mount_failed("SetUp", "mounter.SetUpAt failed to get CSIDriver " + spec.driver + ": " + std::string(drv.status().message()));
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (republish_.size() > 1024) republish_.clear();  // bounded by the drivers there are; refilled at each set-up
    republish_[spec.driver] = requires_republish;
  }
  const std::string mode = spec.ephemeral ? "Ephemeral" : "Persistent";
  if (std::find(modes.begin(), modes.end(), mode) == modes.end())
    return mount_failed("SetUp", "mounter.SetUpAt failed to check volume lifecycle mode: volume mode \"" + mode +
                                     "\" not supported by driver " + spec.driver + " (only supports " + GoQuotedList(modes) + ")");
  if (spec.ephemeral) attach_required = false;  // inline volumes are never attached
  *attachable = attach_required;

  // Attached: the VolumeAttachment of this volume and node, which the attach/detach controller makes.
  std::map<std::string, std::string> publish_context;
  std::string attachment_id;
  if (attach_required && d_.volumes_attached) {
    // Upstream's VerifyControllerAttachedVolume: the attach/detach controller lists the volume on the Node first.
    auto attached = d_.volumes_attached();
    const std::string unique = CSIUniqueVolumeName(spec.driver, spec.volume_handle);
    if (!attached || std::find(attached->begin(), attached->end(), unique) == attached->end()) {
      *unattached = true;
      return absl::FailedPreconditionError("VerifyControllerAttachedVolume failed for volume " + vol +
                                           " : Volume not attached according to node status");
    }
  }
  if (attach_required) {
    attachment_id = CSIAttachmentID(spec.volume_handle, spec.driver, d_.node_name);
    auto va = d_.get_object ? d_.get_object("volumeattachments", "", attachment_id)
                            : absl::StatusOr<json>(absl::FailedPreconditionError("no API server"));
    std::string why;
    if (!va.ok()) {
      why = "volume " + spec.volume_handle + " has GET error for volume attachment " + attachment_id + ": " + std::string(va.status().message());
    } else {
      const json st = va->value("status", json::object());
      bool attached = st.is_object() && st.contains("attached") && st["attached"].is_boolean() && st["attached"].get<bool>();
      if (st.is_object() && st.contains("attachError") && st["attachError"].is_object())
        why = "volume attachment " + attachment_id + " failed: " + api::StringField(st["attachError"], "message");
      else if (!attached)
        why = "volume " + spec.volume_handle + " is not attached yet (volume attachment " + attachment_id + ")";
      if (attached && st.contains("attachmentMetadata")) publish_context = StringMap(st["attachmentMetadata"]);
      if (attached && why.empty()) why.clear();
    }
    if (!why.empty()) {
      *unattached = true;
      return absl::FailedPreconditionError("MountVolume.WaitForAttach failed for volume " + vol +
                                           " : kubernetes.io/csi: attacher.WaitForAttach failed for volume [" + spec.volume_handle +
                                           "] (will continue to try): " + why);
    }
  }

  auto caps = (*client)->NodeGetCapabilities(d_.timeout);
  if (!caps.ok())
    return mount_failed(spec.ephemeral ? "SetUp" : "MountDevice",
                        "failed to check for STAGE_UNSTAGE_VOLUME capability: " + std::string(caps.status().message()));
  CSIClient::Capability cap;
  cap.block = spec.block;
  cap.fs_type = spec.fs_type;
  cap.mount_flags = spec.mount_options;
  cap.access_mode = AccessModeOf(spec.access_mode, caps->single_node_multi_writer);
  const auto& fs_group = pod.spec.security_context.fs_group;
  if (caps->volume_mount_group && fs_group && fs_group_policy != "None") cap.mount_group = std::to_string(*fs_group);

  const std::string key = spec.driver + "^" + spec.volume_handle;
  auto lock = VolumeLock(key);
  std::lock_guard<std::mutex> vl(*lock);

  // Stage once per volume and node.
  std::string staging;
  if (!spec.ephemeral && caps->stage_unstage) {
    staging = CSIStagingPath(d_.root_dir, spec.driver, spec.volume_handle);
    bool staged;
    {
      std::lock_guard<std::mutex> l(mu_);
      staged = staged_.count(key) > 0;
    }
    if (!staged) {
      std::string data_dir = fs::path(staging).parent_path().string();
      std::error_code ec;
      fs::create_directories(data_dir, ec);
      if (ec) return mount_failed("MountDevice", "attacher.MountDevice failed to create dir " + data_dir + ": " + ec.message());
      ::chmod(data_dir.c_str(), 0750);
      json data = {{"driverName", spec.driver}, {"volumeHandle", spec.volume_handle}};
      if (auto st = WriteFileAtomic(data_dir + "/vol_data.json", data.dump()); !st.ok()) return mount_failed("MountDevice", std::string(st.message()));
      auto secrets = ReadSecret(spec.node_stage_secret, "node stage");
      if (!secrets.ok()) {
        RemoveMountDir(staging, true);
        return mount_failed("MountDevice", std::string(secrets.status().message()));
      }
      auto st = (*client)->NodeStageVolume(spec.volume_handle, publish_context, staging, cap, *secrets, spec.volume_attributes, d_.timeout);
      if (!st.ok()) {
        // A driver that timed out may still be staging: its mount, if any, stays for the retry (idempotent) or
        // the tear-down; what only this kubelet made goes.
        RemoveMountDir(staging, true);
        return mount_failed("MountDevice", "attacher.MountDevice failed: " + std::string(st.message()));
      }
      std::lock_guard<std::mutex> l(mu_);
      staged_.insert(key);
    }
  }

  // Publish into the pod's folder, with vol_data.json beside the mount.
  const std::string dir = PodCSIDir(uid) + "/" + spec.spec_name;
  const std::string target = dir + "/mount";
  const bool published = mount::IsMountPoint(target) && ReadVolData(dir + "/vol_data.json").ok();
  if (published && !requires_republish) return target;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return mount_failed("SetUp", "mounter.SetUpAt failed to create dir " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0750);
  json data = {{"specVolID", spec.spec_name},
               {"volumeHandle", spec.volume_handle},
               {"driverName", spec.driver},
               {"nodeName", d_.node_name},
               {"attachmentID", attachment_id},
               {"volumeLifecycleMode", mode},
               {"podVolumeName", pod_volume_name},
               {"readOnly", spec.read_only}};
  if (!staging.empty()) data["stagingPath"] = staging;
  if (auto st = WriteFileAtomic(dir + "/vol_data.json", data.dump()); !st.ok()) return mount_failed("SetUp", std::string(st.message()));
  std::map<std::string, std::string> context = spec.volume_attributes;
  if (pod_info) {
    context["csi.storage.k8s.io/pod.name"] = pod.metadata.name;
    context["csi.storage.k8s.io/pod.namespace"] = pod.metadata.namespace_;
    context["csi.storage.k8s.io/pod.uid"] = uid;
    context["csi.storage.k8s.io/serviceAccount.name"] = pod.spec.service_account_name.empty() ? "default" : pod.spec.service_account_name;
    context["csi.storage.k8s.io/ephemeral"] = spec.ephemeral ? "true" : "false";
  }
  if (!token_requests.empty()) {
    json tokens = json::object();
    for (const auto& tr : token_requests) {
      if (!tr.is_object() || !d_.token) continue;
      std::string aud = api::StringField(tr, "audience");
      int64_t exp = tr.contains("expirationSeconds") && tr["expirationSeconds"].is_number_integer() ? tr["expirationSeconds"].get<int64_t>() : 3600;
      auto t = d_.token(pod, aud, exp);
      if (!t.ok()) {
        RemoveMountDir(target, true);
        return mount_failed("SetUp", "mounter.SetUpAt failed to get service account token attributes: " + std::string(t.status().message()));
      }
      tokens[aud] = {{"token", t->first}, {"expirationTimestamp", t->second}};
    }
    context["csi.storage.k8s.io/serviceAccount.tokens"] = tokens.dump();
  }
  auto secrets = ReadSecret(spec.node_publish_secret, "node publish");
  if (!secrets.ok()) {
    RemoveMountDir(target, true);
    return mount_failed("SetUp", std::string(secrets.status().message()));
  }
  auto st = (*client)->NodePublishVolume(spec.volume_handle, publish_context, staging, target, cap, spec.read_only, *secrets, context,
                                         d_.timeout);
  if (!st.ok() && published) {
    // Republishing (fresh tokens, requiresRepublish) failed: the volume stays as it was published before.
    return mount_failed("SetUp", "mounter.SetUpAt failed: " + std::string(st.message()));
  }
  if (!st.ok()) {
    RemoveMountDir(target, true);
    return mount_failed("SetUp", "mounter.SetUpAt failed: " + std::string(st.message()));
  }
  if (!mount::IsMountPoint(target) && !fs::exists(target, ec))
    return mount_failed("SetUp", "mounter.SetUpAt failed: the driver published nothing at " + target);
  // fsGroup, as the CSIDriver's fsGroupPolicy says (unless the driver applied it through the mount group).
  bool apply = fs_group && !spec.read_only && cap.mount_group.empty() &&
               (fs_group_policy == "File" ||
                (fs_group_policy == "ReadWriteOnceWithFSType" && !spec.fs_type.empty() && spec.access_mode == "ReadWriteOnce"));
  if (apply) {
    gid_t gid = static_cast<gid_t>(*fs_group);
    auto fix = [&](const std::string& p) {
      struct stat s {};
      if (::lstat(p.c_str(), &s) != 0) return;
      if (::lchown(p.c_str(), static_cast<uid_t>(-1), gid) != 0) return;
      if (S_ISLNK(s.st_mode)) return;
      mode_t m = s.st_mode | S_IRGRP | S_IWGRP | (S_ISDIR(s.st_mode) ? S_IXGRP | S_ISGID : 0);
      ::chmod(p.c_str(), m & 07777);
    };
    fix(target);
    for (fs::recursive_directory_iterator it(target, fs::directory_options::none, ec), end; !ec && it != end; it.increment(ec))
      fix(it->path().string());
  }
  Log()->info("MountVolume.SetUp succeeded for volume {} pod=\"{}/{}\" driver=\"{}\"", vol, pod.metadata.namespace_, pod.metadata.name,
              spec.driver);
  return target;
}

bool CSIVolumes::OtherPodUses(const std::string& pod_uid, const std::string& driver, const std::string& handle) const {
  std::error_code ec;
  for (fs::directory_iterator pods(d_.root_dir + "/pods", ec), end; !ec && pods != end; pods.increment(ec)) {
    std::string uid = pods->path().filename().string();
    if (uid == pod_uid) continue;
    std::error_code ec2;
    for (fs::directory_iterator vols(PodCSIDir(uid), ec2); !ec2 && vols != end; vols.increment(ec2)) {
      auto data = ReadVolData(vols->path().string() + "/vol_data.json");
      if (data.ok() && api::StringField(*data, "driverName") == driver && api::StringField(*data, "volumeHandle") == handle) return true;
    }
  }
  return false;
}

absl::Status CSIVolumes::TearDownOne(const std::string& pod_uid, const std::string& dir) {
  const std::string target = dir + "/mount";
  const std::string name = fs::path(dir).filename().string();
  auto data = ReadVolData(dir + "/vol_data.json");
  std::error_code ec;
  if (!data.ok()) {
    // Nothing this kubelet can name to the driver: only an unmounted, empty folder is removed.
    if (mount::IsMountPoint(target))
      return absl::FailedPreconditionError("UnmountVolume.TearDown failed for volume \"" + name + "\": " + std::string(data.status().message()) +
                                           " and " + target + " is still mounted");
    RemoveMountDir(target, false);
    fs::remove(dir + "/vol_data.json", ec);
    if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) fs::remove(dir, ec);
    return absl::OkStatus();
  }
  const std::string driver = api::StringField(*data, "driverName");
  const std::string handle = api::StringField(*data, "volumeHandle");
  auto lock = VolumeLock(driver + "^" + handle);
  std::lock_guard<std::mutex> vl(*lock);
  auto fail = [&](const std::string& what, const std::string& why) {
    return absl::UnavailableError(what + " failed for volume \"" + name + "\" (UniqueName: \"" + CSIUniqueVolumeName(driver, handle) +
                                  "\") pod \"" + pod_uid + "\" : kubernetes.io/csi: " + why);
  };
  // A driver that is not registered (restarting, or gone): the tear-down waits for it.
  auto client = d_.drivers ? d_.drivers->Client(driver) : absl::StatusOr<std::shared_ptr<CSIClient>>(absl::NotFoundError("no CSI driver store"));
  if (fs::exists(target, ec) || mount::IsMountPoint(target)) {
    if (!client.ok()) return fail("UnmountVolume.TearDown", "Unmounter.TearDownAt failed to get CSI client: " + std::string(client.status().message()));
    if (auto st = (*client)->NodeUnpublishVolume(handle, target, d_.timeout); !st.ok())
      return fail("UnmountVolume.TearDown", "Unmounter.TearDownAt failed: " + std::string(st.message()));
    if (mount::IsMountPoint(target))
      return fail("UnmountVolume.TearDown", "Unmounter.TearDownAt failed: " + target + " is still mounted after NodeUnpublishVolume");
    RemoveMountDir(target, false);
    if (fs::exists(target, ec)) fs::remove_all(target, ec);  // not a mount point: the driver's leftovers
  }
  std::string staging = api::StringField(*data, "stagingPath");
  fs::remove(dir + "/vol_data.json", ec);
  if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) fs::remove(dir, ec);
  Log()->info("UnmountVolume.TearDown succeeded for volume \"{}\" podUID=\"{}\" driver=\"{}\"", name, pod_uid, driver);
  // Unstage once no other pod on the node uses the volume.
  if (staging.empty() || OtherPodUses(pod_uid, driver, handle)) return absl::OkStatus();
  if (staging != CSIStagingPath(d_.root_dir, driver, handle)) return absl::OkStatus();  // not a path this kubelet makes
  if (!client.ok()) return fail("UnmountDevice", "attacher.UnmountDevice failed to get CSI client: " + std::string(client.status().message()));
  if (auto st = (*client)->NodeUnstageVolume(handle, staging, d_.timeout); !st.ok())
    return fail("UnmountDevice", "attacher.UnmountDevice failed: " + std::string(st.message()));
  if (mount::IsMountPoint(staging)) return fail("UnmountDevice", "attacher.UnmountDevice failed: " + staging + " is still mounted");
  RemoveMountDir(staging, true);
  {
    std::lock_guard<std::mutex> l(mu_);
    staged_.erase(driver + "^" + handle);
  }
  Log()->info("UnmountDevice succeeded for volume \"{}\" driver=\"{}\"", name, driver);
  return absl::OkStatus();
}

absl::Status CSIVolumes::TearDownPod(const std::string& pod_uid) {
  std::error_code ec;
  std::vector<std::string> dirs;
  for (fs::directory_iterator vols(PodCSIDir(pod_uid), ec), end; !ec && vols != end; vols.increment(ec))
    if (vols->is_directory(ec)) dirs.push_back(vols->path().string());
  absl::Status first;
  for (const auto& d : dirs)
    if (auto st = TearDownOne(pod_uid, d); !st.ok() && first.ok()) first = st;
  if (first.ok()) {
    std::error_code ec2;
    if (fs::is_directory(PodCSIDir(pod_uid), ec2) && fs::is_empty(PodCSIDir(pod_uid), ec2)) fs::remove(PodCSIDir(pod_uid), ec2);
  }
  return first;
}

// The staging path a vol_data.json names, when it is the one this kubelet makes for its driver and handle (the file
// is read back from disk: a path it names elsewhere is never handed to a driver).
std::string CSIVolumes::TrustedStagingPath(const json& data) const {
  std::string staging = api::StringField(data, "stagingPath");
  if (staging.empty() || staging != CSIStagingPath(d_.root_dir, api::StringField(data, "driverName"), api::StringField(data, "volumeHandle")))
    return "";
  return staging;
}

bool CSIVolumes::RequiresRepublish(const std::string& driver) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = republish_.find(driver);
  return it != republish_.end() && it->second;
}

absl::StatusOr<bool> CSIVolumes::Expand(const api::Pod& pod, const CSIVolumeSpec& spec, int64_t required_bytes) {
  const std::string fail = "MountVolume.NodeExpandVolume failed for volume \"" + spec.spec_name + "\" : ";
  std::string dir = PodCSIDir(pod.metadata.uid) + "/" + spec.spec_name;
  auto data = ReadVolData(dir + "/vol_data.json");
  if (!data.ok()) return absl::FailedPreconditionError(fail + std::string(data.status().message()));
  if (!d_.drivers) return absl::FailedPreconditionError(fail + "no CSI driver store");
  auto client = d_.drivers->Client(spec.driver);
  if (!client.ok()) return absl::UnavailableError(fail + "Expander.NodeExpand failed to get CSI client: " + std::string(client.status().message()));
  auto caps = (*client)->NodeGetCapabilities(d_.timeout);
  if (!caps.ok()) return absl::UnavailableError(fail + "Expander.NodeExpand failed to check if node supports expansion: " + std::string(caps.status().message()));
  if (!caps->expand) return false;
  CSIClient::Capability cap;
  cap.block = spec.block;
  cap.fs_type = spec.fs_type;
  cap.mount_flags = spec.mount_options;
  cap.access_mode = AccessModeOf(spec.access_mode, caps->single_node_multi_writer);
  auto key = spec.driver + "^" + spec.volume_handle;
  auto lock = VolumeLock(key);
  std::lock_guard<std::mutex> vl(*lock);
  auto got = (*client)->NodeExpandVolume(spec.volume_handle, dir + "/mount", TrustedStagingPath(*data), required_bytes, cap,
                                         d_.timeout);
  if (!got.ok()) return absl::Status(got.status().code(), fail + "Expander.NodeExpand failed to expand the volume: " + std::string(got.status().message()));
  Log()->info("NodeExpandVolume succeeded volume=\"{}\" pod=\"{}/{}\" required={} capacity={}", spec.spec_name, pod.metadata.namespace_,
              pod.metadata.name, required_bytes, *got);
  return true;
}

absl::StatusOr<CSIVolumeUsage> CSIVolumes::VolumeStats(const std::string& pod_uid, const std::string& spec_name) {
  std::string dir = PodCSIDir(pod_uid) + "/" + spec_name;
  auto data = ReadVolData(dir + "/vol_data.json");
  if (!data.ok()) return data.status();
  if (!d_.drivers) return absl::NotFoundError("no CSI driver store");
  auto client = d_.drivers->Client(api::StringField(*data, "driverName"));
  if (!client.ok()) return client.status();
  auto caps = (*client)->NodeGetCapabilities(std::chrono::seconds(10));
  if (!caps.ok()) return caps.status();
  if (!caps->get_volume_stats) return absl::NotFoundError("the driver does not offer GET_VOLUME_STATS");
  auto usage = (*client)->NodeGetVolumeStats(api::StringField(*data, "volumeHandle"), dir + "/mount",
                                             TrustedStagingPath(*data), std::chrono::seconds(10));
  if (usage.ok() && !caps->volume_condition) usage->has_condition = false;
  return usage;
}

}  // namespace kubelet::volumemanager
