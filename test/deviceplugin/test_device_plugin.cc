// The project's device plugin for the tests: serves deviceplugin v1beta1 on a unix socket in the kubelet's
// device-plugins folder and registers with the kubelet's Registration service (kubelet.sock), as a vendor's
// plugin does. Devices "<prefix>-0" .. "<prefix>-N-1", each on NUMA node (index % numa). Switches, files in
// --state-dir: "unhealthy-<id>" marks that device unhealthy (the list is sent again within 100 ms). Every call
// is one JSON line in <state>/calls.log. Each device is a file <state>/devices/<id> that Allocate mounts read-only at
// /var/run/test-devices/<id>, with TEST_DEVICES=<ids> and an annotation test.kubelet-cpp.io/devices=<ids>; with
// --device-node=<host path> also a device node /dev/test-<id>, with --cdi=<vendor/class> a CDI name <vendor/class>=<id>.
// The plugin registers again whenever kubelet.sock is created anew (a restarted kubelet), its own socket too.
//   test_device_plugin --socket-dir=<dir> --state-dir=<dir> --resource=<name> [--devices=N] [--numa=N]
//                      [--endpoint=<file name>] [--version=v1beta1] [--prefix=dev] [--device-node=<path>]
//                      [--cdi=<vendor/class>] [--pre-start] [--preferred] [--fail-allocate=<message>]
//                      [--allocate-delay-ms=N]
#include <sys/stat.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "deviceplugin/v1beta1/api.grpc.pb.h"

namespace fs = std::filesystem;
using grpc::ServerContext;
using grpc::Status;
using json = nlohmann::json;

namespace {

struct Options {
  std::string socket_dir, state, resource, endpoint = "test-device-plugin.sock", version = "v1beta1", prefix = "dev";
  std::string device_node, cdi, fail_allocate;
  int devices = 2, numa = 1, allocate_delay_ms = 0;
  bool pre_start = false, preferred = false;
} o;

std::atomic<bool> stop{false};
std::mutex log_mu;

void LogCall(const std::string& method, json extra) {
  std::lock_guard<std::mutex> l(log_mu);
  extra["method"] = method;
  std::ofstream(o.state + "/calls.log", std::ios::app) << extra.dump() << "\n";
}

v1beta1::ListAndWatchResponse Snapshot() {
  v1beta1::ListAndWatchResponse r;
  for (int i = 0; i < o.devices; ++i) {
    auto* d = r.add_devices();
    d->set_id(o.prefix + "-" + std::to_string(i));
    std::error_code ec;
    d->set_health(fs::exists(o.state + "/unhealthy-" + d->id(), ec) ? "Unhealthy" : "Healthy");
    d->mutable_topology()->add_nodes()->set_id(i % std::max(1, o.numa));
  }
  return r;
}

class Plugin final : public v1beta1::DevicePlugin::Service {
  Status GetDevicePluginOptions(ServerContext*, const v1beta1::Empty*, v1beta1::DevicePluginOptions* r) override {
    LogCall("GetDevicePluginOptions", json::object());
    r->set_pre_start_required(o.pre_start);
    r->set_get_preferred_allocation_available(o.preferred);
    return Status::OK;
  }
  Status ListAndWatch(ServerContext* ctx, const v1beta1::Empty*, grpc::ServerWriter<v1beta1::ListAndWatchResponse>* w) override {
    LogCall("ListAndWatch", json::object());
    std::string last;
    while (!stop && !ctx->IsCancelled()) {
      auto snap = Snapshot();
      std::string now = snap.SerializeAsString();
      if (now != last) {
        auto sent = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch());
        if (!w->Write(snap)) break;
        if (!last.empty()) LogCall("ListAndWatchUpdate", {{"unix_us", sent.count()}});  // for the benchmark's latency
        last = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return Status::OK;
  }
  // The last devices offered, sorted the other way round: a choice the kubelet would not make by itself.
  Status GetPreferredAllocation(ServerContext*, const v1beta1::PreferredAllocationRequest* q, v1beta1::PreferredAllocationResponse* r) override {
    json reqs = json::array();
    for (const auto& c : q->container_requests()) {
      std::vector<std::string> avail(c.available_deviceids().begin(), c.available_deviceids().end());
      std::vector<std::string> must(c.must_include_deviceids().begin(), c.must_include_deviceids().end());
      std::sort(avail.rbegin(), avail.rend());
      auto* cr = r->add_container_responses();
      for (const auto& id : must) cr->add_deviceids(id);
      for (const auto& id : avail)
        if (cr->deviceids_size() < c.allocation_size() && std::find(must.begin(), must.end(), id) == must.end()) cr->add_deviceids(id);
      reqs.push_back({{"available", avail}, {"must_include", must}, {"size", c.allocation_size()}});
    }
    LogCall("GetPreferredAllocation", {{"requests", reqs}});
    return Status::OK;
  }
  Status Allocate(ServerContext*, const v1beta1::AllocateRequest* q, v1beta1::AllocateResponse* r) override {
    json ids = json::array();
    for (const auto& c : q->container_requests()) {
      json one = json::array();
      for (const auto& id : c.devices_ids()) one.push_back(id);
      ids.push_back(one);
    }
    LogCall("Allocate", {{"devices", ids}});
    if (o.allocate_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.allocate_delay_ms));
    if (!o.fail_allocate.empty()) return Status(grpc::StatusCode::UNKNOWN, o.fail_allocate);
    for (const auto& c : q->container_requests()) {
      auto* cr = r->add_container_responses();
      std::string joined;
      for (const auto& id : c.devices_ids()) {
        joined += (joined.empty() ? "" : ",") + id;
        auto* m = cr->add_mounts();
        m->set_container_path("/var/run/test-devices/" + id);
        m->set_host_path(o.state + "/devices/" + id);
        m->set_read_only(true);
        if (!o.device_node.empty()) {
          auto* d = cr->add_devices();
          d->set_container_path("/dev/test-" + id);
          d->set_host_path(o.device_node);
          d->set_permissions("rw");
        }
        if (!o.cdi.empty()) cr->add_cdi_devices()->set_name(o.cdi + "=" + id);
      }
      (*cr->mutable_envs())["TEST_DEVICES"] = joined;
      (*cr->mutable_annotations())["test.kubelet-cpp.io/devices"] = joined;
    }
    return Status::OK;
  }
  Status PreStartContainer(ServerContext*, const v1beta1::PreStartContainerRequest* q, v1beta1::PreStartContainerResponse*) override {
    json ids = json::array();
    for (const auto& id : q->devices_ids()) ids.push_back(id);
    LogCall("PreStartContainer", {{"devices", ids}});
    return Status::OK;
  }
};

// Which file a path is now (inode and change time: an inode number alone comes back for a new file), "" for none.
std::string Identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* flag) -> const char* {
      std::string f = std::string(flag) + "=";
      return a.rfind(f, 0) == 0 ? argv[i] + f.size() : nullptr;
    };
    if (auto v = val("--socket-dir")) o.socket_dir = v;
    else if (auto v = val("--state-dir")) o.state = v;
    else if (auto v = val("--resource")) o.resource = v;
    else if (auto v = val("--endpoint")) o.endpoint = v;
    else if (auto v = val("--version")) o.version = v;
    else if (auto v = val("--prefix")) o.prefix = v;
    else if (auto v = val("--devices")) o.devices = std::atoi(v);
    else if (auto v = val("--numa")) o.numa = std::atoi(v);
    else if (auto v = val("--device-node")) o.device_node = v;
    else if (auto v = val("--cdi")) o.cdi = v;
    else if (auto v = val("--fail-allocate")) o.fail_allocate = v;
    else if (auto v = val("--allocate-delay-ms")) o.allocate_delay_ms = std::atoi(v);
    else if (a == "--pre-start") o.pre_start = true;
    else if (a == "--preferred") o.preferred = true;
  }
  if (o.socket_dir.empty() || o.state.empty() || o.resource.empty()) {
    std::cerr << "usage: " << argv[0] << " --socket-dir=<dir> --state-dir=<dir> --resource=<name> [--devices=N]\n";
    return 2;
  }
  std::error_code ec;
  fs::create_directories(o.state + "/devices", ec);
  for (int i = 0; i < o.devices; ++i) std::ofstream(o.state + "/devices/" + o.prefix + "-" + std::to_string(i)) << o.prefix << "-" << i << "\n";
  const std::string sock = o.socket_dir + "/" + o.endpoint, kubelet_sock = o.socket_dir + "/kubelet.sock";
  Plugin plugin;
  std::unique_ptr<grpc::Server> server;
  auto serve = [&]() -> bool {
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    fs::remove(sock, ec);
    grpc::ServerBuilder b;
    b.AddListeningPort("unix://" + sock, grpc::InsecureServerCredentials());
    b.RegisterService(&plugin);
    server = b.BuildAndStart();
    return server != nullptr;
  };
  // Register with the kubelet, as a plugin does once its own server is up.
  auto register_once = [&]() -> Status {
    auto ch = grpc::CreateChannel("unix://" + kubelet_sock, grpc::InsecureChannelCredentials());
    auto reg = v1beta1::Registration::NewStub(ch);
    v1beta1::RegisterRequest rq;
    rq.set_version(o.version);
    rq.set_endpoint(o.endpoint);
    rq.set_resource_name(o.resource);
    rq.mutable_options()->set_pre_start_required(o.pre_start);
    rq.mutable_options()->set_get_preferred_allocation_available(o.preferred);
    v1beta1::Empty empty;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.set_wait_for_ready(true);
    Status st = reg->Register(&ctx, rq, &empty);
    LogCall("Register", {{"ok", st.ok()}, {"error", st.error_message()}});
    return st;
  };
  if (!serve()) {
    std::cerr << "cannot listen on " << sock << "\n";
    return 1;
  }
  std::string registered_with = Identity(kubelet_sock);
  Status st = register_once();
  if (!st.ok()) {
    std::cerr << "registration refused: " << st.error_message() << "\n";
    server->Shutdown();
    return 3;
  }
  std::signal(SIGTERM, [](int) { stop = true; });
  std::signal(SIGINT, [](int) { stop = true; });
  while (!stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // A kubelet that started again made kubelet.sock anew and removed the plugins' sockets: serve and register again.
    std::string now = Identity(kubelet_sock);
    if (now.empty()) {
      registered_with.clear();  // gone: whatever comes next is a new one
      continue;
    }
    if (now == registered_with) continue;
    if (Identity(sock).empty() && !serve()) continue;
    if (register_once().ok()) registered_with = now;
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  fs::remove(sock, ec);
  return 0;
}
