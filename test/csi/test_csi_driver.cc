// A CSI node plugin of the project's own, for the tests: it speaks csi.v1 (Identity, Node) for real
// on a unix socket and registers itself through <root-dir>/plugins_registry as the
// node-driver-registrar sidecar would (pluginregistration.Registration on a socket of its own).
// Volumes are real mounts: the backing store of a volume is a tmpfs at <state>/volumes/<handle>,
// staged by a bind mount onto the staging path and published by a bind mount onto the target.
// Every call is logged as one JSON line to <state>/calls.log. Faults, switched by files in <state>:
//   fail-<Method>   the call fails with code FAILED_PRECONDITION (the file's text as the message);
//                   a first line "N" fails the next N calls only
//   hang-<Method>   the call sleeps 10 minutes (past any deadline) before doing anything
//   crash-<Method>  the process exits in the middle of the call (after the mount, before the answer)
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "csi/v1/csi.grpc.pb.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
using json = nlohmann::json;

struct Options {
  std::string name = "csi.test.kubelet-cpp.io";
  std::string endpoint;
  std::string registration_dir;
  std::string state;
  std::string node_id;
  int64_t max_volumes = 0;
  std::map<std::string, std::string> topology;
  bool stage = true;
  bool stats = true;
  std::string versions = "1.5.0";
} o;

std::mutex log_mu;

void LogCall(const std::string& method, json fields) {
  fields["method"] = method;
  std::lock_guard<std::mutex> l(log_mu);
  std::ofstream f(o.state + "/calls.log", std::ios::app);
  f << fields.dump() << "\n";
}

std::atomic<bool> stop{false};

// The fault switches of a method, read at each call.
Status Faults(const std::string& method) {
  std::error_code ec;
  if (fs::exists(o.state + "/hang-" + method, ec)) {
    // Past any deadline, but not past the driver's own stop.
    auto end = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    while (!stop && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return Status(StatusCode::UNAVAILABLE, "the driver is stopping");
  }
  std::string fail = o.state + "/fail-" + method;
  if (fs::exists(fail, ec)) {
    std::ifstream f(fail);
    std::string first, rest, line;
    std::getline(f, first);
    while (std::getline(f, line)) rest += line;
    char* end = nullptr;
    long n = std::strtol(first.c_str(), &end, 10);
    bool counted = end && *end == '\0' && !first.empty();
    if (counted) {
      if (n <= 1) {
        fs::remove(fail, ec);
      } else {
        std::ofstream w(fail, std::ios::trunc);
        w << (n - 1) << "\n" << rest;
      }
    }
    std::string msg = counted ? rest : first + rest;
    return Status(StatusCode::FAILED_PRECONDITION, msg.empty() ? "injected failure of " + method : msg);
  }
  return Status::OK;
}

void MaybeCrash(const std::string& method) {
  std::error_code ec;
  if (fs::exists(o.state + "/crash-" + method, ec)) {
    LogCall("crash", {{"in", method}});
    fs::remove(o.state + "/crash-" + method, ec);  // one crash: the restarted driver answers again
    ::_exit(3);
  }
}

bool IsMountPoint(const std::string& path) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string id, parent, dev, root, mp;
    ss >> id >> parent >> dev >> root >> mp;
    if (mp == path) return true;
  }
  return false;
}

std::string SafeName(const std::string& handle) {
  std::string out;
  for (char c : handle) out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_');
  return out;
}

Status Backing(const std::string& handle, const std::map<std::string, std::string>& ctx, std::string* path) {
  *path = o.state + "/volumes/" + SafeName(handle);
  std::error_code ec;
  fs::create_directories(*path, ec);
  if (IsMountPoint(*path)) return Status::OK;
  std::string size = ctx.count("size") ? ctx.at("size") : "64m";
  std::string opts = "size=" + size + ",mode=0777";
  if (::mount("tmpfs", path->c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
    return Status(StatusCode::INTERNAL, "mount tmpfs at " + *path + ": " + std::strerror(errno));
  return Status::OK;
}

Status Bind(const std::string& from, const std::string& to, bool read_only) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (IsMountPoint(to)) return Status::OK;  // idempotent
  if (::mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Status(StatusCode::INTERNAL, "bind " + from + " at " + to + ": " + std::strerror(errno));
  if (read_only && ::mount(nullptr, to.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
    return Status(StatusCode::INTERNAL, "remount " + to + " read-only: " + std::strerror(errno));
  return Status::OK;
}

Status Unmount(const std::string& path) {
  if (IsMountPoint(path) && ::umount2(path.c_str(), 0) != 0 && ::umount2(path.c_str(), MNT_DETACH) != 0)
    return Status(StatusCode::INTERNAL, "unmount " + path + ": " + std::strerror(errno));
  std::error_code ec;
  fs::remove(path, ec);
  return Status::OK;
}

template <typename M>
json MapJson(const M& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

template <typename M>
std::map<std::string, std::string> StdMap(const M& m) {
  return {m.begin(), m.end()};
}

class Identity final : public csi::v1::Identity::Service {
  Status GetPluginInfo(ServerContext*, const csi::v1::GetPluginInfoRequest*, csi::v1::GetPluginInfoResponse* r) override {
    LogCall("GetPluginInfo", {});
    r->set_name(o.name);
    r->set_vendor_version("0.1.0");
    return Status::OK;
  }
  Status GetPluginCapabilities(ServerContext*, const csi::v1::GetPluginCapabilitiesRequest*,
                               csi::v1::GetPluginCapabilitiesResponse*) override {
    return Status::OK;
  }
  Status Probe(ServerContext*, const csi::v1::ProbeRequest*, csi::v1::ProbeResponse*) override { return Status::OK; }
};

class Node final : public csi::v1::Node::Service {
  Status NodeGetInfo(ServerContext*, const csi::v1::NodeGetInfoRequest*, csi::v1::NodeGetInfoResponse* r) override {
    LogCall("NodeGetInfo", {});
    if (auto st = Faults("NodeGetInfo"); !st.ok()) return st;
    r->set_node_id(o.node_id);
    r->set_max_volumes_per_node(o.max_volumes);
    for (const auto& [k, v] : o.topology) (*r->mutable_accessible_topology()->mutable_segments())[k] = v;
    return Status::OK;
  }
  Status NodeGetCapabilities(ServerContext*, const csi::v1::NodeGetCapabilitiesRequest*, csi::v1::NodeGetCapabilitiesResponse* r) override {
    if (auto st = Faults("NodeGetCapabilities"); !st.ok()) return st;
    using T = csi::v1::NodeServiceCapability_RPC_Type;
    std::vector<T> caps;
    if (o.stage) caps.push_back(csi::v1::NodeServiceCapability_RPC_Type_STAGE_UNSTAGE_VOLUME);
    if (o.stats) {
      caps.push_back(csi::v1::NodeServiceCapability_RPC_Type_GET_VOLUME_STATS);
      caps.push_back(csi::v1::NodeServiceCapability_RPC_Type_VOLUME_CONDITION);
    }
    caps.push_back(csi::v1::NodeServiceCapability_RPC_Type_EXPAND_VOLUME);
    for (T t : caps) r->add_capabilities()->mutable_rpc()->set_type(t);
    return Status::OK;
  }
  Status NodeStageVolume(ServerContext*, const csi::v1::NodeStageVolumeRequest* q, csi::v1::NodeStageVolumeResponse*) override {
    LogCall("NodeStageVolume", {{"volume_id", q->volume_id()},
                                {"staging_target_path", q->staging_target_path()},
                                {"publish_context", MapJson(q->publish_context())},
                                {"volume_context", MapJson(q->volume_context())},
                                {"secrets", MapJson(q->secrets())},
                                {"access_mode", q->volume_capability().access_mode().mode()},
                                {"fs_type", q->volume_capability().mount().fs_type()}});
    if (auto st = Faults("NodeStageVolume"); !st.ok()) return st;
    if (q->volume_id().empty() || q->staging_target_path().empty()) return Status(StatusCode::INVALID_ARGUMENT, "volume_id and staging_target_path are required");
    std::string backing;
    if (auto st = Backing(q->volume_id(), StdMap(q->volume_context()), &backing); !st.ok()) return st;
    if (auto st = Bind(backing, q->staging_target_path(), false); !st.ok()) return st;
    MaybeCrash("NodeStageVolume");
    return Status::OK;
  }
  Status NodeUnstageVolume(ServerContext*, const csi::v1::NodeUnstageVolumeRequest* q, csi::v1::NodeUnstageVolumeResponse*) override {
    LogCall("NodeUnstageVolume", {{"volume_id", q->volume_id()}, {"staging_target_path", q->staging_target_path()}});
    if (auto st = Faults("NodeUnstageVolume"); !st.ok()) return st;
    return Unmount(q->staging_target_path());
  }
  Status NodePublishVolume(ServerContext*, const csi::v1::NodePublishVolumeRequest* q, csi::v1::NodePublishVolumeResponse*) override {
    LogCall("NodePublishVolume", {{"volume_id", q->volume_id()},
                                  {"staging_target_path", q->staging_target_path()},
                                  {"target_path", q->target_path()},
                                  {"readonly", q->readonly()},
                                  {"publish_context", MapJson(q->publish_context())},
                                  {"volume_context", MapJson(q->volume_context())},
                                  {"secrets", MapJson(q->secrets())},
                                  {"access_mode", q->volume_capability().access_mode().mode()},
                                  {"mount_flags", json(std::vector<std::string>(q->volume_capability().mount().mount_flags().begin(),
                                                                                q->volume_capability().mount().mount_flags().end()))}});
    if (auto st = Faults("NodePublishVolume"); !st.ok()) return st;
    if (q->volume_id().empty() || q->target_path().empty()) return Status(StatusCode::INVALID_ARGUMENT, "volume_id and target_path are required");
    std::string from = q->staging_target_path();
    if (o.stage && from.empty() && q->volume_context().count("csi.storage.k8s.io/ephemeral") == 0 &&
        q->volume_id().rfind("csi-", 0) != 0)
      return Status(StatusCode::FAILED_PRECONDITION, "staging_target_path is required: the driver stages its volumes");
    if (from.empty()) {
      if (auto st = Backing(q->volume_id(), StdMap(q->volume_context()), &from); !st.ok()) return st;
    } else if (!IsMountPoint(from)) {
      return Status(StatusCode::FAILED_PRECONDITION, "volume " + q->volume_id() + " is not staged at " + from);
    }
    if (auto st = Bind(from, q->target_path(), q->readonly()); !st.ok()) return st;
    MaybeCrash("NodePublishVolume");
    return Status::OK;
  }
  Status NodeUnpublishVolume(ServerContext*, const csi::v1::NodeUnpublishVolumeRequest* q, csi::v1::NodeUnpublishVolumeResponse*) override {
    LogCall("NodeUnpublishVolume", {{"volume_id", q->volume_id()}, {"target_path", q->target_path()}});
    if (auto st = Faults("NodeUnpublishVolume"); !st.ok()) return st;
    if (auto st = Unmount(q->target_path()); !st.ok()) return st;
    // An inline volume's storage lives as long as its one pod.
    if (q->volume_id().rfind("csi-", 0) == 0) {
      std::string backing = o.state + "/volumes/" + SafeName(q->volume_id());
      if (IsMountPoint(backing)) ::umount2(backing.c_str(), MNT_DETACH);
      std::error_code ec;
      fs::remove(backing, ec);
    }
    return Status::OK;
  }
  Status NodeGetVolumeStats(ServerContext*, const csi::v1::NodeGetVolumeStatsRequest* q, csi::v1::NodeGetVolumeStatsResponse* r) override {
    if (auto st = Faults("NodeGetVolumeStats"); !st.ok()) return st;
    struct statvfs s {};
    if (::statvfs(q->volume_path().c_str(), &s) != 0) return Status(StatusCode::NOT_FOUND, "volume path " + q->volume_path() + " not found");
    auto* b = r->add_usage();
    b->set_unit(csi::v1::VolumeUsage_Unit_BYTES);
    b->set_total(static_cast<int64_t>(s.f_blocks * s.f_frsize));
    b->set_available(static_cast<int64_t>(s.f_bavail * s.f_frsize));
    b->set_used(static_cast<int64_t>((s.f_blocks - s.f_bfree) * s.f_frsize));
    auto* i = r->add_usage();
    i->set_unit(csi::v1::VolumeUsage_Unit_INODES);
    i->set_total(static_cast<int64_t>(s.f_files));
    i->set_available(static_cast<int64_t>(s.f_ffree));
    i->set_used(static_cast<int64_t>(s.f_files - s.f_ffree));
    std::error_code ec;
    bool abnormal = fs::exists(o.state + "/abnormal", ec);
    r->mutable_volume_condition()->set_abnormal(abnormal);
    r->mutable_volume_condition()->set_message(abnormal ? "the test marked the volume abnormal" : "volume is healthy");
    return Status::OK;
  }
  Status NodeExpandVolume(ServerContext*, const csi::v1::NodeExpandVolumeRequest* q, csi::v1::NodeExpandVolumeResponse* r) override {
    LogCall("NodeExpandVolume", {{"volume_id", q->volume_id()}, {"required_bytes", q->capacity_range().required_bytes()}});
    if (auto st = Faults("NodeExpandVolume"); !st.ok()) return st;
    std::string backing = o.state + "/volumes/" + SafeName(q->volume_id());
    if (::mount(nullptr, backing.c_str(), nullptr, MS_REMOUNT, ("size=" + std::to_string(q->capacity_range().required_bytes())).c_str()) != 0)
      return Status(StatusCode::INTERNAL, "resize " + backing + ": " + std::strerror(errno));
    r->set_capacity_bytes(q->capacity_range().required_bytes());
    return Status::OK;
  }
};

// node-driver-registrar's half: the registration socket the kubelet's plugin manager finds.
class Registration final : public pluginregistration::Registration::Service {
  Status GetInfo(ServerContext*, const pluginregistration::InfoRequest*, pluginregistration::PluginInfo* r) override {
    LogCall("GetInfo", {});
    if (auto st = Faults("GetInfo"); !st.ok()) return st;
    r->set_type("CSIPlugin");
    r->set_name(o.name);
    r->set_endpoint(o.endpoint);
    std::stringstream ss(o.versions);
    std::string v;
    while (std::getline(ss, v, ',')) r->add_supported_versions(v);
    return Status::OK;
  }
  Status NotifyRegistrationStatus(ServerContext*, const pluginregistration::RegistrationStatus* q,
                                  pluginregistration::RegistrationStatusResponse*) override {
    LogCall("NotifyRegistrationStatus", {{"plugin_registered", q->plugin_registered()}, {"error", q->error()}});
    return Status::OK;
  }
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* flag) -> const char* {
      std::string f = std::string(flag) + "=";
      return a.rfind(f, 0) == 0 ? argv[i] + f.size() : nullptr;
    };
    if (auto v = val("--name")) o.name = v;
    else if (auto v = val("--endpoint")) o.endpoint = v;
    else if (auto v = val("--registration-dir")) o.registration_dir = v;
    else if (auto v = val("--state-dir")) o.state = v;
    else if (auto v = val("--node-id")) o.node_id = v;
    else if (auto v = val("--max-volumes")) o.max_volumes = std::atoll(v);
    else if (auto v = val("--versions")) o.versions = v;
    else if (auto v = val("--topology")) {
      std::string kv = v;
      auto eq = kv.find('=');
      if (eq != std::string::npos) o.topology[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else if (a == "--no-stage") o.stage = false;
    else if (a == "--no-stats") o.stats = false;
    else {
      std::cerr << "unknown flag " << a << "\n";
      return 2;
    }
  }
  if (o.endpoint.empty() || o.state.empty()) {
    std::cerr << "usage: " << argv[0] << " --endpoint=<socket> --state-dir=<dir> [--registration-dir=<dir>] [--name=...]\n";
    return 2;
  }
  if (o.node_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    o.node_id = host;
  }
  std::error_code ec;
  fs::create_directories(o.state + "/volumes", ec);
  fs::create_directories(fs::path(o.endpoint).parent_path(), ec);
  fs::remove(o.endpoint, ec);
  Identity identity;
  Node node;
  grpc::ServerBuilder b;
  b.AddListeningPort("unix://" + o.endpoint, grpc::InsecureServerCredentials());
  b.RegisterService(&identity);
  b.RegisterService(&node);
  auto server = b.BuildAndStart();
  if (!server) {
    std::cerr << "cannot listen on " << o.endpoint << "\n";
    return 1;
  }
  Registration reg;
  std::unique_ptr<grpc::Server> reg_server;
  std::string reg_socket;
  if (!o.registration_dir.empty()) {
    fs::create_directories(o.registration_dir, ec);
    reg_socket = o.registration_dir + "/" + o.name + "-reg.sock";
    fs::remove(reg_socket, ec);
    grpc::ServerBuilder rb;
    rb.AddListeningPort("unix://" + reg_socket, grpc::InsecureServerCredentials());
    rb.RegisterService(&reg);
    reg_server = rb.BuildAndStart();
    if (!reg_server) {
      std::cerr << "cannot listen on " << reg_socket << "\n";
      return 1;
    }
  }
  LogCall("started", {{"endpoint", o.endpoint}, {"registration", reg_socket}});
  std::signal(SIGTERM, [](int) { stop = true; });
  std::signal(SIGINT, [](int) { stop = true; });
  while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (reg_server) reg_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (!reg_socket.empty()) fs::remove(reg_socket, ec);  // as the registrar does on exit: the kubelet deregisters
  fs::remove(o.endpoint, ec);
  return 0;
}
