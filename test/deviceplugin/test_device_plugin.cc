// The project's device plugin for the tests: serves deviceplugin v1beta1 on a unix socket in the kubelet's
// device-plugins folder and registers with the kubelet's Registration service (kubelet.sock), as a vendor's
// plugin does. Devices "<prefix>-0" .. "<prefix>-N-1", each on NUMA node (index % numa). Switches, files in
// --state-dir: "unhealthy-<id>" marks that device unhealthy (the list is sent again within 100 ms). Every call
// is one JSON line in <state>/calls.log.
//   test_device_plugin --socket-dir=<dir> --state-dir=<dir> --resource=<name> [--devices=N] [--numa=N]
//                      [--endpoint=<file name>] [--version=v1beta1] [--prefix=dev]
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
  int devices = 2, numa = 1;
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
    r->set_pre_start_required(false);
    r->set_get_preferred_allocation_available(false);
    return Status::OK;
  }
  Status ListAndWatch(ServerContext* ctx, const v1beta1::Empty*, grpc::ServerWriter<v1beta1::ListAndWatchResponse>* w) override {
    LogCall("ListAndWatch", json::object());
    std::string last;
    while (!stop && !ctx->IsCancelled()) {
      auto snap = Snapshot();
      std::string now = snap.SerializeAsString();
      if (now != last) {
        if (!w->Write(snap)) break;
        last = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return Status::OK;
  }
  Status Allocate(ServerContext*, const v1beta1::AllocateRequest* q, v1beta1::AllocateResponse* r) override {
    json ids = json::array();
    for (const auto& c : q->container_requests()) {
      json one = json::array();
      for (const auto& id : c.devices_ids()) one.push_back(id);
      ids.push_back(one);
      auto* cr = r->add_container_responses();
      std::string joined;
      for (const auto& id : c.devices_ids()) joined += (joined.empty() ? "" : ",") + id;
      (*cr->mutable_envs())["TEST_DEVICES"] = joined;
    }
    LogCall("Allocate", {{"devices", ids}});
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
    if (auto v = val("--socket-dir")) o.socket_dir = v;
    else if (auto v = val("--state-dir")) o.state = v;
    else if (auto v = val("--resource")) o.resource = v;
    else if (auto v = val("--endpoint")) o.endpoint = v;
    else if (auto v = val("--version")) o.version = v;
    else if (auto v = val("--prefix")) o.prefix = v;
    else if (auto v = val("--devices")) o.devices = std::atoi(v);
    else if (auto v = val("--numa")) o.numa = std::atoi(v);
  }
  if (o.socket_dir.empty() || o.state.empty() || o.resource.empty()) {
    std::cerr << "usage: " << argv[0] << " --socket-dir=<dir> --state-dir=<dir> --resource=<name> [--devices=N]\n";
    return 2;
  }
  std::error_code ec;
  fs::create_directories(o.state, ec);
  std::string sock = o.socket_dir + "/" + o.endpoint;
  fs::remove(sock, ec);
  Plugin plugin;
  grpc::ServerBuilder b;
  b.AddListeningPort("unix://" + sock, grpc::InsecureServerCredentials());
  b.RegisterService(&plugin);
  auto server = b.BuildAndStart();
  if (!server) {
    std::cerr << "cannot listen on " << sock << "\n";
    return 1;
  }
  // Register with the kubelet, as a plugin does once its own server is up.
  auto ch = grpc::CreateChannel("unix://" + o.socket_dir + "/kubelet.sock", grpc::InsecureChannelCredentials());
  auto reg = v1beta1::Registration::NewStub(ch);
  v1beta1::RegisterRequest rq;
  rq.set_version(o.version);
  rq.set_endpoint(o.endpoint);
  rq.set_resource_name(o.resource);
  v1beta1::Empty empty;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx.set_wait_for_ready(true);
  Status st = reg->Register(&ctx, rq, &empty);
  LogCall("Register", {{"ok", st.ok()}, {"error", st.error_message()}});
  if (!st.ok()) {
    std::cerr << "registration refused: " << st.error_message() << "\n";
    server->Shutdown();
    return 3;
  }
  std::signal(SIGTERM, [](int) { stop = true; });
  std::signal(SIGINT, [](int) { stop = true; });
  while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  fs::remove(sock, ec);
  return 0;
}
