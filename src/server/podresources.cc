#include "kubelet/server/podresources.h"

#include <chrono>
#include <filesystem>
#include <mutex>

#include <grpcpp/grpcpp.h>

#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"
#include "podresources/v1/api.grpc.pb.h"

namespace kubelet::server {
namespace {

// Tokens refill at qps up to burst; one per call.
class TokenBucket {
 public:
  TokenBucket(double qps, int burst) : qps_(qps), burst_(burst), tokens_(burst), last_(std::chrono::steady_clock::now()) {}
  bool Take() {
    std::lock_guard<std::mutex> l(mu_);
    auto now = std::chrono::steady_clock::now();
    tokens_ = std::min<double>(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * qps_);
    last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  std::mutex mu_;
  double qps_;
  int burst_;
  double tokens_;
  std::chrono::steady_clock::time_point last_;
};

void AddDevices(const std::vector<ContainerDeviceSet>& sets, google::protobuf::RepeatedPtrField<v1::ContainerDevices>* out) {
  for (const auto& s : sets) {
    auto* d = out->Add();
    d->set_resource_name(s.resource);
    for (const auto& id : s.ids) d->add_device_ids(id);
    if (!s.numa_nodes.empty()) {
      auto* topo = d->mutable_topology();
      for (int64_t n : s.numa_nodes) topo->add_nodes()->set_id(n);
    }
  }
}

}  // namespace

struct PodResourcesServer::Impl final : public v1::PodResourcesLister::Service {
  Impl(PodResourcesOptions o, PodResourcesProviders p) : o(std::move(o)), p(std::move(p)), limiter(this->o.qps, this->o.burst) {}

  grpc::Status List(grpc::ServerContext*, const v1::ListPodResourcesRequest*, v1::ListPodResourcesResponse* r) override {
    if (!limiter.Take()) return Limited();
    return Run("List", [&] {
      for (const auto& pod : p.active_pods ? p.active_pods() : std::vector<api::Pod>{}) Fill(pod, r->add_pod_resources());
    });
  }

  grpc::Status GetAllocatableResources(grpc::ServerContext*, const v1::AllocatableResourcesRequest*,
                                       v1::AllocatableResourcesResponse* r) override {
    if (!limiter.Take()) return Limited();
    return Run("GetAllocatableResources", [&] {
      if (p.allocatable_devices) AddDevices(p.allocatable_devices(), r->mutable_devices());
      if (p.allocatable_cpus)
        for (int64_t c : p.allocatable_cpus()) r->add_cpu_ids(c);
    });
  }

  grpc::Status Get(grpc::ServerContext*, const v1::GetPodResourcesRequest* q, v1::GetPodResourcesResponse* r) override {
    if (!limiter.Take()) return Limited();
    if (!o.get_enabled) return grpc::Status(grpc::StatusCode::UNKNOWN, "PodResources API Get method disabled");
    bool found = false;
    auto st = Run("Get", [&] {
      for (const auto& pod : p.active_pods ? p.active_pods() : std::vector<api::Pod>{})
        if (pod.metadata.name == q->pod_name() && pod.metadata.namespace_ == q->pod_namespace()) {
          Fill(pod, r->mutable_pod_resources());
          found = true;
          break;
        }
    });
    if (!st.ok()) return st;
    if (!found)
      return grpc::Status(grpc::StatusCode::UNKNOWN, "pod " + q->pod_name() + " in namespace " + q->pod_namespace() + " not found");
    return grpc::Status::OK;
  }

  void Fill(const api::Pod& pod, v1::PodResources* out) {
    out->set_name(pod.metadata.name);
    out->set_namespace_(pod.metadata.namespace_);
    auto devices = p.pod_devices ? p.pod_devices(pod.metadata.uid) : std::map<std::string, std::vector<ContainerDeviceSet>>{};
    auto one = [&](const api::Container& c) {
      auto* cr = out->add_containers();
      cr->set_name(c.name);
      if (auto it = devices.find(c.name); it != devices.end()) AddDevices(it->second, cr->mutable_devices());
      if (p.container_cpus)
        for (int64_t id : p.container_cpus(pod.metadata.uid, c.name)) cr->add_cpu_ids(id);
    };
    // Sidecars are listed with the containers, other init containers are not (they are done).
    for (const auto& c : pod.spec.init_containers)
      if (api::IsRestartableInitContainer(c)) one(c);
    for (const auto& c : pod.spec.containers) one(c);
  }

  static grpc::Status Limited() { return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "rejected by rate limit"); }

  grpc::Status Run(const char* what, const std::function<void()>& fn) {
    auto st = Guarded(std::string("pod resources ") + what, [&] {
      fn();
      return absl::OkStatus();
    });
    return st.ok() ? grpc::Status::OK : grpc::Status(grpc::StatusCode::INTERNAL, std::string(st.message()));
  }

  PodResourcesOptions o;
  PodResourcesProviders p;
  TokenBucket limiter;
  std::unique_ptr<grpc::Server> server;
};

PodResourcesServer::PodResourcesServer(PodResourcesOptions o, PodResourcesProviders p)
    : impl_(std::make_unique<Impl>(std::move(o), std::move(p))) {}
PodResourcesServer::~PodResourcesServer() { Stop(); }

absl::Status PodResourcesServer::Start() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(impl_->o.socket).parent_path(), ec);
  fs::remove(impl_->o.socket, ec);  // left by a kubelet before this one
  grpc::ServerBuilder b;
  b.AddListeningPort("unix://" + impl_->o.socket, grpc::InsecureServerCredentials());
  b.RegisterService(impl_.get());
  impl_->server = b.BuildAndStart();
  if (!impl_->server) return absl::UnavailableError("failed to serve the pod resources API on " + impl_->o.socket);
  log::Get("podresources")->info("Starting the pod resources API socket=\"{}\"", impl_->o.socket);
  return absl::OkStatus();
}

void PodResourcesServer::Stop() {
  if (impl_ && impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    impl_->server.reset();
  }
}

}  // namespace kubelet::server
