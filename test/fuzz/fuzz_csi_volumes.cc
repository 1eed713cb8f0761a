// What reaches the CSI volume plugin from outside: the PV and the pod's inline csi volume (API objects), the
// CSIDriver, VolumeAttachment and Secret objects it reads, a driver's answers (capabilities, stats, errors,
// supported versions) and the vol_data.json files on disk. The input is one JSON object; a fake driver answers
// from it. Whatever it holds: no exception or crash, an error names the volume, and nothing is created outside
// the kubelet's root folder.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "kubelet/api/codec.h"
#include "kubelet/volumemanager/csi.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace kubelet;
using namespace kubelet::volumemanager;

namespace {

const fs::path& Base() {
  static const fs::path base = [] {
    fs::path p = fs::temp_directory_path() / ("fuzz-csi-" + std::to_string(getpid()));
    fs::create_directories(p / "root/pods");
    return p;
  }();
  return base;
}

absl::Status StatusOf(const json& j, const char* method) {
  if (!j.is_object() || !j.contains("fail") || !j["fail"].is_object() || !j["fail"].contains(method)) return absl::OkStatus();
  const json& f = j["fail"][method];
  int code = f.is_number_integer() ? f.get<int>() : 14;
  if (code <= 0 || code > 16) code = 13;
  return absl::Status(static_cast<absl::StatusCode>(code), "injected");
}

class FuzzClient : public CSIClient {
 public:
  explicit FuzzClient(const json& in) : in_(in) {}
  absl::StatusOr<CSINodeInfo> NodeGetInfo(std::chrono::milliseconds) override {
    if (auto st = StatusOf(in_, "NodeGetInfo"); !st.ok()) return st;
    return CSINodeInfo{"node-id", 1, {}};
  }
  absl::StatusOr<CSINodeCapabilities> NodeGetCapabilities(std::chrono::milliseconds) override {
    if (auto st = StatusOf(in_, "NodeGetCapabilities"); !st.ok()) return st;
    CSINodeCapabilities c;
    const json caps = in_.value("caps", json::array());
    auto has = [&](const char* n) { return caps.is_array() && std::find(caps.begin(), caps.end(), json(n)) != caps.end(); };
    c.stage_unstage = has("STAGE_UNSTAGE_VOLUME");
    c.get_volume_stats = has("GET_VOLUME_STATS");
    c.expand = has("EXPAND_VOLUME");
    c.volume_condition = has("VOLUME_CONDITION");
    c.single_node_multi_writer = has("SINGLE_NODE_MULTI_WRITER");
    c.volume_mount_group = has("VOLUME_MOUNT_GROUP");
    return c;
  }
  absl::Status NodeStageVolume(const std::string&, const std::map<std::string, std::string>&, const std::string& path,
                               const Capability&, const std::map<std::string, std::string>&,
                               const std::map<std::string, std::string>&, std::chrono::milliseconds) override {
    Inside(path);
    return StatusOf(in_, "NodeStageVolume");
  }
  absl::Status NodeUnstageVolume(const std::string&, const std::string& path, std::chrono::milliseconds) override {
    Inside(path);
    return StatusOf(in_, "NodeUnstageVolume");
  }
  absl::Status NodePublishVolume(const std::string&, const std::map<std::string, std::string>&, const std::string& staging,
                                 const std::string& target, const Capability&, bool, const std::map<std::string, std::string>&,
                                 const std::map<std::string, std::string>&, std::chrono::milliseconds) override {
    if (!staging.empty()) Inside(staging);
    Inside(target);
    return StatusOf(in_, "NodePublishVolume");
  }
  absl::Status NodeUnpublishVolume(const std::string&, const std::string& target, std::chrono::milliseconds) override {
    Inside(target);
    return StatusOf(in_, "NodeUnpublishVolume");
  }
  absl::StatusOr<CSIVolumeUsage> NodeGetVolumeStats(const std::string&, const std::string& path, const std::string& staging,
                                                    std::chrono::milliseconds) override {
    Inside(path);
    if (!staging.empty()) Inside(staging);
    if (auto st = StatusOf(in_, "NodeGetVolumeStats"); !st.ok()) return st;
    CSIVolumeUsage u;
    const json s = in_.value("stats", json::object());
    if (s.is_object()) {
      auto num = [&](const char* k) { return s.contains(k) && s[k].is_number_integer() ? s[k].get<int64_t>() : -1; };
      u.capacity_bytes = num("capacity");
      u.used_bytes = num("used");
      u.available_bytes = num("available");
      u.abnormal = s.value("abnormal", false) == true;
      u.has_condition = s.contains("abnormal");
    }
    return u;
  }
  absl::StatusOr<int64_t> NodeExpandVolume(const std::string&, const std::string& path, const std::string& staging, int64_t bytes,
                                           const Capability&, std::chrono::milliseconds) override {
    Inside(path);
    if (!staging.empty()) Inside(staging);
    if (auto st = StatusOf(in_, "NodeExpandVolume"); !st.ok()) return st;
    return bytes;
  }

 private:
  // Every path the plugin hands a driver is under the kubelet's root folder.
  static void Inside(const std::string& p) {
    fs::path n = fs::path(p).lexically_normal();
    std::string root = (Base() / "root").string();
    if (n.string().rfind(root + "/", 0) != 0) __builtin_trap();
  }
  json in_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // Supported versions as a registration socket answers them, one per line.
  {
    std::vector<std::string> versions;
    size_t start = 0;
    for (size_t i = 0; i <= text.size() && versions.size() < 64; ++i)
      if (i == text.size() || text[i] == '\n') {
        versions.push_back(text.substr(start, i - start));
        start = i + 1;
      }
    (void)HighestSupportedCSIVersion(versions);
    (void)IsValidCSIDriverName(text);
  }
  json in = json::parse(text, nullptr, false);
  if (!in.is_object()) return 0;
  const fs::path root = Base() / "root";
  CSIDriverStore store([&in](const std::string&) { return std::make_unique<FuzzClient>(in); });
  const json drivers = in.value("drivers", json::array({"csi.fuzz"}));
  if (drivers.is_array())
    for (const auto& d : drivers)
      if (d.is_string()) store.Set(d.get<std::string>(), "/fuzz.sock", "1.0.0");
  CSIDeps deps;
  deps.drivers = &store;
  deps.root_dir = root.string();
  deps.node_name = "fuzz-node";
  deps.timeout = std::chrono::milliseconds(10);
  deps.get_object = [&in](const std::string& resource, const std::string&, const std::string&) -> absl::StatusOr<json> {
    if (!in.contains(resource)) return absl::NotFoundError(resource + " not found");
    return in[resource];
  };
  deps.token = [&in](const api::Pod&, const std::string&, int64_t) -> absl::StatusOr<std::pair<std::string, std::string>> {
    if (in.value("token_fails", false) == true) return absl::UnavailableError("no token");
    return std::make_pair(std::string("t"), std::string("2030-01-01T00:00:00Z"));
  };
  CSIVolumes csi(deps);

  api::Pod pod;
  if (in.contains("pod")) {
    auto decoded = api::DecodePod(in["pod"]);
    if (decoded.ok()) pod = *decoded;
  }
  pod.metadata.uid = "fuzz-uid";
  pod.metadata.namespace_ = pod.metadata.namespace_.empty() ? "default" : pod.metadata.namespace_;
  std::vector<CSIVolumeSpec> specs;
  if (in.contains("pv")) {
    auto s = CSIVolumeFromPV(in["pv"], in.value("claim_read_only", false) == true);
    if (s.ok()) specs.push_back(*s);
  }
  for (const auto& v : pod.spec.volumes) {
    auto s = CSIVolumeFromInline(pod, v);
    if (s.ok()) specs.push_back(*s);
  }
  for (const auto& spec : specs) {
    bool unattached = false, attachable = false;
    auto r = csi.SetUp(pod, spec, spec.spec_name, &unattached, &attachable);
    if (r.ok() && fs::path(*r).lexically_normal().string().rfind(root.string() + "/", 0) != 0) __builtin_trap();
    (void)csi.VolumeStats(pod.metadata.uid, spec.spec_name);
    (void)csi.Expand(pod, spec, 1 << 20);
  }
  // A vol_data.json left on disk by anyone: read back by stats and tear-down.
  if (in.contains("voldata") && in["voldata"].is_string()) {
    fs::path dir = root / "pods" / pod.metadata.uid / "volumes/kubernetes.io~csi/left";
    fs::create_directories(dir / "mount");
    std::ofstream(dir / "vol_data.json") << in["voldata"].get<std::string>();
    (void)csi.VolumeStats(pod.metadata.uid, "left");
  }
  (void)csi.TearDownPod(pod.metadata.uid);
  std::error_code ec;
  fs::remove_all(root / "pods" / pod.metadata.uid, ec);
  fs::remove_all(root / "plugins", ec);
  // Nothing beside the root folder.
  for (const auto& e : fs::directory_iterator(Base(), ec))
    if (e.path().filename() != "root") __builtin_trap();
  return 0;
}
