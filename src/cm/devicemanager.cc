#include "kubelet/cm/devicemanager.h"

#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "kubelet/api/names.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"

namespace kubelet::cm {
namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxDevicesPerPlugin = 16384;  // a plugin's list beyond this is cut (and said so)

std::string GoQuoted(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + std::string("\"") + v[i] + "\"";
  return out + "]";
}

}  // namespace

bool IsExtendedResourceName(const std::string& name) {
  // Not a native resource (no domain, or the kubernetes.io domain), not a quota name, and a qualified name.
  auto slash = name.find('/');
  if (slash == std::string::npos || name.find('/', slash + 1) != std::string::npos) return false;
  std::string domain = name.substr(0, slash), rest = name.substr(slash + 1);
  if (domain == "kubernetes.io" || (domain.size() > 14 && domain.compare(domain.size() - 14, 14, ".kubernetes.io") == 0)) return false;
  if (name.rfind("requests.", 0) == 0) return false;
  return api::IsDNS1123Subdomain(domain) && api::IsQualifiedNamePart(rest);
}

namespace {

class DeviceManagerImpl;

class RegistrationService final : public v1beta1::Registration::Service {
 public:
  explicit RegistrationService(DeviceManagerImpl* m) : m_(m) {}
  grpc::Status Register(grpc::ServerContext*, const v1beta1::RegisterRequest* r, v1beta1::Empty*) override;

 private:
  DeviceManagerImpl* m_;
};

class DeviceManagerImpl : public DeviceManager {
 public:
  explicit DeviceManagerImpl(DeviceManagerOptions o) : o_(std::move(o)), service_(this), log_(log::Get("devicemanager")) {}
  ~DeviceManagerImpl() override { Stop(); }

  absl::Status Start() override {
    std::error_code ec;
    fs::create_directories(o_.socket_dir, ec);
    if (ec) return absl::InternalError("cannot create " + o_.socket_dir + ": " + ec.message());
    // Sockets left from before are stale: plugins watching theirs notice and register again. The checkpoint and
    // anything that is not a socket stay.
    for (fs::directory_iterator it(o_.socket_dir, ec), end; !ec && it != end; it.increment(ec)) {
      struct stat st {};
      if (it->path().filename() == kDeviceCheckpoint || ::lstat(it->path().c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
    const std::string sock = o_.socket_dir + "/" + kKubeletSocket;
    grpc::ServerBuilder b;
    b.AddListeningPort("unix://" + sock, grpc::InsecureServerCredentials());
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
    if (!server_) return absl::UnavailableError("failed to listen to socket while starting device plugin registry: " + sock);
    log_->info("Starting device plugin registration server socket=\"{}\"", sock);
    return absl::OkStatus();
  }

  void Stop() override {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      server_.reset();
    }
    std::map<std::string, std::shared_ptr<Endpoint>> all;
    {
      std::lock_guard<std::mutex> l(mu_);
      stopped_ = true;
      all.swap(endpoints_);
    }
    for (auto& [name, e] : all) StopEndpoint(e);
  }

  DeviceCapacity GetCapacity() override {
    DeviceCapacity c;
    std::vector<std::shared_ptr<Endpoint>> gone;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto now = Steady::now();
      for (auto it = devices_.begin(); it != devices_.end();) {
        const std::string& res = it->first;
        auto e = endpoints_.find(res);
        bool stopped = e == endpoints_.end() || e->second->stopped_at.has_value();
        if (stopped && (e == endpoints_.end() || now - *e->second->stopped_at > o_.stop_grace)) {
          c.removed.push_back(res);
          if (e != endpoints_.end()) {
            gone.push_back(e->second);
            endpoints_.erase(e);
          }
          it = devices_.erase(it);
          continue;
        }
        int64_t healthy = 0;
        for (const auto& d : it->second) healthy += d.healthy && !stopped ? 1 : 0;
        c.capacity[res] = static_cast<int64_t>(it->second.size());
        c.allocatable[res] = healthy;
        ++it;
      }
    }
    for (auto& e : gone) StopEndpoint(e);
    return c;
  }

  std::map<std::string, std::vector<PluginDevice>> Devices() const override {
    std::lock_guard<std::mutex> l(mu_);
    return devices_;
  }

  absl::Status RegisterDevicePlugin(const std::string& version, const std::string& endpoint,
                                    const std::string& resource) override {
    log_->info("Got registration request from device plugin with resource resourceName=\"{}\"", resource);
    if (version != kDevicePluginVersion)
      return absl::InvalidArgumentError("requested API version \"" + version + "\" is not supported by kubelet. Supported versions are " +
                                        GoQuoted({kDevicePluginVersion}));
    if (!IsExtendedResourceName(resource)) return absl::InvalidArgumentError("the ResourceName \"" + resource + "\" is invalid");
    std::string path = endpoint;
    if (path.empty() || path[0] != '/') {
      // A file name in the device-plugins folder, nothing else.
      if (path.empty() || path.find('/') != std::string::npos || path == "." || path == "..")
        return absl::InvalidArgumentError("the endpoint \"" + endpoint + "\" is not a socket name in " + o_.socket_dir);
      path = o_.socket_dir + "/" + path;
    }
    return Connect(resource, path);
  }

  // The plugin manager's half (a socket in plugins_registry of type DevicePlugin).
  absl::Status ValidatePlugin(const std::string& name, const std::string&, const std::vector<std::string>& versions) override {
    if (std::find(versions.begin(), versions.end(), kDevicePluginVersion) == versions.end()) {
      std::string all = "[";
      for (size_t i = 0; i < versions.size(); ++i) all += (i ? " " : "") + versions[i];
      return absl::InvalidArgumentError(std::string("manager version, ") + kDevicePluginVersion +
                                        ", is not among plugin supported versions " + all + "]");
    }
    if (!IsExtendedResourceName(name))
      return absl::InvalidArgumentError("invalid name of device plugin socket: the ResourceName \"" + name + "\" is invalid");
    return absl::OkStatus();
  }
  absl::Status RegisterPlugin(const std::string& name, const std::string& endpoint, const std::vector<std::string>&,
                              std::chrono::milliseconds) override {
    return Connect(name, endpoint);
  }
  void DeRegisterPlugin(const std::string& name, const std::string&) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto e = endpoints_.find(name); e != endpoints_.end() && !e->second->stopped_at) e->second->stopped_at = Steady::now();
  }

 private:
  struct Endpoint {
    std::string resource, path;
    std::unique_ptr<v1beta1::DevicePlugin::Stub> stub;
    grpc::ClientContext ctx;  // of the ListAndWatch stream: cancelled to stop it
    std::atomic<bool> cancelled{false};
    std::thread thread;
    std::optional<Steady::time_point> stopped_at;  // under the manager's mu_
  };

  absl::Status Connect(const std::string& resource, const std::string& path) {
    auto ch = grpc::CreateChannel("unix://" + path, grpc::InsecureChannelCredentials());
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + o_.dial_timeout))
      return absl::UnavailableError("failed to dial device plugin: " + path + ": not connected within the deadline");
    auto e = std::make_shared<Endpoint>();
    e->resource = resource;
    e->path = path;
    e->stub = v1beta1::DevicePlugin::NewStub(ch);
    std::shared_ptr<Endpoint> old;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopped_) return absl::CancelledError("the device manager is stopping");
      if (auto it = endpoints_.find(resource); it != endpoints_.end()) old = it->second;
      endpoints_[resource] = e;
      registrations_++;
    }
    if (old) StopEndpoint(old);  // a plugin that registers again replaces its old endpoint
    e->thread = std::thread([this, e] { GuardedRun("device plugin ListAndWatch " + e->resource, [this, e] { Watch(e); }); });
    log_->info("Registered endpoint resourceName=\"{}\" endpoint=\"{}\"", resource, path);
    return absl::OkStatus();
  }

  void Watch(const std::shared_ptr<Endpoint>& e) {
    v1beta1::Empty req;
    auto reader = e->stub->ListAndWatch(&e->ctx, req);
    if (e->cancelled) e->ctx.TryCancel();  // stopped before the call existed
    v1beta1::ListAndWatchResponse resp;
    while (reader->Read(&resp)) {
      std::vector<PluginDevice> devs;
      std::set<std::string> seen;
      for (const auto& d : resp.devices()) {
        if (devs.size() >= kMaxDevicesPerPlugin) {
          log_->error("Device plugin reported too many devices, the rest are ignored resourceName=\"{}\" limit={}", e->resource,
                      kMaxDevicesPerPlugin);
          break;
        }
        if (d.id().empty() || !seen.insert(d.id()).second) {
          log_->warn("Device plugin reported a device without an ID or twice, ignored resourceName=\"{}\" id=\"{}\"", e->resource, d.id());
          continue;
        }
        PluginDevice pd;
        pd.id = d.id();
        pd.healthy = d.health() == "Healthy";
        for (const auto& n : d.topology().nodes()) pd.numa_nodes.push_back(n.id());
        devs.push_back(std::move(pd));
      }
      std::lock_guard<std::mutex> l(mu_);
      auto it = endpoints_.find(e->resource);
      if (it == endpoints_.end() || it->second != e) return;  // replaced meanwhile
      devices_[e->resource] = std::move(devs);
    }
    auto st = reader->Finish();
    log_->info("ListAndWatch ended resourceName=\"{}\" err=\"{}\"", e->resource, st.error_message());
    // The plugin went: its devices are unhealthy now; the resource goes after the grace period.
    std::lock_guard<std::mutex> l(mu_);
    auto it = endpoints_.find(e->resource);
    if (it != endpoints_.end() && it->second == e && !e->stopped_at) e->stopped_at = Steady::now();
  }

  void StopEndpoint(const std::shared_ptr<Endpoint>& e) {
    e->cancelled = true;
    e->ctx.TryCancel();
    if (e->thread.joinable() && e->thread.get_id() != std::this_thread::get_id()) e->thread.join();
  }

  DeviceManagerOptions o_;
  RegistrationService service_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  bool stopped_ = false;
  int64_t registrations_ = 0;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_;
  std::map<std::string, std::vector<PluginDevice>> devices_;
};

grpc::Status RegistrationService::Register(grpc::ServerContext*, const v1beta1::RegisterRequest* r, v1beta1::Empty*) {
  absl::Status st = Guarded("device plugin Register", [&] { return m_->RegisterDevicePlugin(r->version(), r->endpoint(), r->resource_name()); });
  if (!st.ok()) return grpc::Status(grpc::StatusCode::UNKNOWN, std::string(st.message()));
  return grpc::Status::OK;
}

}  // namespace

std::unique_ptr<DeviceManager> NewDeviceManager(DeviceManagerOptions o) { return std::make_unique<DeviceManagerImpl>(std::move(o)); }

}  // namespace kubelet::cm
