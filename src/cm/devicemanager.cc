#include "kubelet/cm/devicemanager.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <cctype>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <absl/strings/str_join.h>
#include <grpcpp/grpcpp.h>

#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "kubelet/api/names.h"
#include "kubelet/api/quantity.h"
#include "kubelet/cm/devicemanager_checkpoint.h"
#include "kubelet/util/grpc_error.h"
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

std::vector<PluginDevice> DevicesFrom(const std::string& res, const v1beta1::ListAndWatchResponse& resp) {
  static auto log = log::Get("devicemanager");
  std::vector<PluginDevice> devs;
  std::set<std::string> seen;
  for (const auto& d : resp.devices()) {
    if (devs.size() >= kMaxDevicesPerPlugin) {
      log->error("Device plugin reported too many devices, the rest are ignored resourceName=\"{}\" limit={}", res, kMaxDevicesPerPlugin);
      break;
    }
    if (d.id().empty() || !seen.insert(d.id()).second) {
      log->warn("Device plugin reported a device without an ID or twice, ignored resourceName=\"{}\" id=\"{}\"", res, d.id());
      continue;
    }
    PluginDevice pd;
    pd.id = d.id();
    pd.healthy = d.health() == "Healthy";
    for (const auto& n : d.topology().nodes()) pd.numa_nodes.push_back(n.id());
    devs.push_back(std::move(pd));
  }
  return devs;
}

}  // namespace

std::vector<PluginDevice> DevicesFromListAndWatch(const std::string& resource, const std::string& serialized_reply) {
  v1beta1::ListAndWatchResponse r;
  if (!r.ParseFromString(serialized_reply)) return {};
  return DevicesFrom(resource, r);
}

bool MergeAllocateResponse(const std::string& serialized, DeviceRunContainerOptions* out) {
  v1beta1::ContainerAllocateResponse r;
  if (!r.ParseFromString(serialized)) return false;
  // The first resource to set a name wins, as upstream's deviceRunContainerOptions.
  std::set<std::string> envs, mounts, devices, cdi;
  for (const auto& [k, v] : out->envs) envs.insert(k);
  for (const auto& m : out->mounts) mounts.insert(m.container_path);
  for (const auto& d : out->devices) devices.insert(d.container_path);
  cdi.insert(out->cdi_devices.begin(), out->cdi_devices.end());
  std::map<std::string, std::string> sorted(r.envs().begin(), r.envs().end());
  for (const auto& [k, v] : sorted)
    if (envs.insert(k).second) out->envs.emplace_back(k, v);
  for (const auto& m : r.mounts())
    if (mounts.insert(m.container_path()).second) out->mounts.push_back({m.container_path(), m.host_path(), m.read_only()});
  for (const auto& d : r.devices())
    if (devices.insert(d.container_path()).second) out->devices.push_back({d.container_path(), d.host_path(), d.permissions()});
  for (const auto& [k, v] : r.annotations()) out->annotations.emplace(k, v);
  for (const auto& c : r.cdi_devices())
    if (cdi.insert(c.name()).second) out->cdi_devices.push_back(c.name());
  return true;
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

std::chrono::system_clock::time_point Deadline(std::chrono::milliseconds t) { return std::chrono::system_clock::now() + t; }

// The device-plugin resources a container asks for (extended resources are not overcommitted: limits suffice).
std::vector<std::pair<std::string, int64_t>> ResourceLimits(const api::Container& c) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& [name, value] : c.resources.limits) {
    if (!IsExtendedResourceName(name)) continue;
    auto q = api::ParseQuantity(value);
    if (q.ok() && q->Value() > 0) out.emplace_back(name, q->Value());
  }
  return out;
}

class DeviceManagerImpl : public DeviceManager {
 public:
  DeviceManagerImpl(DeviceManagerOptions o, DeviceManagerDeps d)
      : o_(std::move(o)), d_(std::move(d)), service_(this), log_(log::Get("devicemanager")) {}
  ~DeviceManagerImpl() override { Stop(); }

  absl::Status Start() override {
    std::error_code ec;
    fs::create_directories(o_.socket_dir, ec);
    if (ec) return absl::InternalError("cannot create " + o_.socket_dir + ": " + ec.message());
    boot_id_ = ReadBootID();  // once: it changes only with a reboot
    ReadCheckpoint();
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
      server_->Shutdown(Deadline(std::chrono::milliseconds(1000)));
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

  absl::Status RegisterDevicePlugin(const std::string& version, const std::string& endpoint, const std::string& resource,
                                    bool pre_start_required, bool get_preferred_allocation_available) override {
    log_->info("Got registration request from device plugin with resource resourceName=\"{}\"", resource);
    if (d_.on_registration) d_.on_registration(resource);
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
    v1beta1::DevicePluginOptions opts;
    opts.set_pre_start_required(pre_start_required);
    opts.set_get_preferred_allocation_available(get_preferred_allocation_available);
    return Connect(resource, path, &opts);
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
    if (d_.on_registration) d_.on_registration(name);
    return Connect(name, endpoint, nullptr);
  }
  void DeRegisterPlugin(const std::string& name, const std::string&) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto e = endpoints_.find(name); e != endpoints_.end() && !e->second->stopped_at) e->second->stopped_at = Steady::now();
  }

  // ---- allocation ----

  absl::Status Admit(const api::Pod& pod) override {
    for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
      for (const auto& c : *list)
        if (auto st = Allocate(pod, c); !st.ok()) return st;
    return absl::OkStatus();
  }

  // Sets aside the container's devices (the sync loop; no plugin is called). The pod's containers come in its order.
  absl::Status Allocate(const api::Pod& pod, const api::Container& c) override {
    BeginAdmission(pod, c.name);
    const std::string& uid = pod.metadata.uid;
    bool init = std::any_of(pod.spec.init_containers.begin(), pod.spec.init_containers.end(),
                            [&](const api::Container& x) { return x.name == c.name; });
    const TopologyHint affinity = d_.affinity ? d_.affinity->GetAffinity(uid, c.name) : TopologyHint{};
    std::lock_guard<std::mutex> l(mu_);
    admitting_.seen.insert(c.name);
    if (!admitting_.asks) return absl::OkStatus();
    Pending& p = pending_[uid];
    absl::Status result = VisitLocked(uid, c, init, affinity, &p);
    const api::Container* last = !pod.spec.containers.empty() ? &pod.spec.containers.back()
                                 : !pod.spec.init_containers.empty() ? &pod.spec.init_containers.back() : nullptr;
    bool any = std::any_of(p.plan.begin(), p.plan.end(), [](const Planned& x) { return x.allocate; });
    if (!result.ok() || (last && last->name == c.name && !any)) pending_.erase(uid);
    return result;
  }

  TopologyHints GetTopologyHints(const api::Pod& pod, const api::Container& c) override {
    BeginAdmission(pod, c.name);
    const std::string& uid = pod.metadata.uid;
    TopologyHints out;
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [res, need] : ResourceLimits(c)) {
      if (!IsDevicePluginResourceLocked(res)) continue;
      if (!HasTopologyLocked(res)) {
        KLOG_V(log_, 4)("Resource does not have a topology preference resourceName=\"{}\" pod=\"{}/{}\" containerName=\"{}\"", res,
                        pod.metadata.namespace_, pod.metadata.name, c.name);
        out[res] = std::nullopt;
        continue;
      }
      if (const Held* h = FindHeldLocked(uid, c.name, res)) {
        auto ids = AllIDs(*h);
        if (static_cast<int64_t>(ids.size()) != need) {
          log_->error("Resource already allocated to pod with different number than request resourceName=\"{}\" pod=\"{}/{}\" "
                      "containerName=\"{}\" request={} allocated={}", res, pod.metadata.namespace_, pod.metadata.name, c.name, need, ids.size());
          out[res] = std::vector<TopologyHint>{};
          continue;
        }
        KLOG_V(log_, 3)("Regenerating TopologyHints for resource already allocated to pod resourceName=\"{}\" pod=\"{}/{}\" containerName=\"{}\"",
                        res, pod.metadata.namespace_, pod.metadata.name, c.name);
        out[res] = GenerateHintsLocked(uid, res, {ids.begin(), ids.end()}, {}, need);
        continue;
      }
      if (!admitting_.ready && d_.container_running && d_.container_running(uid, c.name)) {
        out[res] = std::nullopt;  // running from before the restart, its devices unknown: no preference
        continue;
      }
      auto available = AvailableLocked(res, nullptr);
      std::set<std::string> reusable;
      if (auto r = admitting_.reuse.find(res); r != admitting_.reuse.end()) reusable = r->second;
      std::set<std::string> either(available.begin(), available.end());
      either.insert(reusable.begin(), reusable.end());
      if (static_cast<int64_t>(either.size()) < need) {
        log_->error("Unable to generate topology hints: requested number of devices unavailable resourceName=\"{}\" request={} available={}",
                    res, need, either.size());
        out[res] = std::vector<TopologyHint>{};
        continue;
      }
      out[res] = GenerateHintsLocked(uid, res, available, reusable, need);
    }
    return out;
  }

  TopologyHints GetPodTopologyHints(const api::Pod& pod) override {
    BeginAdmission(pod, "");
    const std::string& uid = pod.metadata.uid;
    TopologyHints out;
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [res, need] : PodDeviceRequests(pod)) {
      if (!IsDevicePluginResourceLocked(res)) continue;
      if (!HasTopologyLocked(res)) {
        out[res] = std::nullopt;
        continue;
      }
      std::set<std::string> held;
      if (auto p = pod_devices_.find(uid); p != pod_devices_.end())
        for (const auto& [container, by_res] : p->second)
          if (auto r = by_res.find(res); r != by_res.end()) {
            auto ids = AllIDs(r->second);
            held.insert(ids.begin(), ids.end());
          }
      if (!held.empty()) {
        if (static_cast<int64_t>(held.size()) != need) {
          log_->error("Resource already allocated to pod with different number than request resourceName=\"{}\" pod=\"{}/{}\" request={} "
                      "allocated={}", res, pod.metadata.namespace_, pod.metadata.name, need, held.size());
          out[res] = std::vector<TopologyHint>{};
          continue;
        }
        out[res] = GenerateHintsLocked(uid, res, {held.begin(), held.end()}, {}, need);
        continue;
      }
      auto available = AvailableLocked(res, nullptr);
      if (static_cast<int64_t>(available.size()) < need) {
        log_->error("Unable to generate topology hints: requested number of devices unavailable resourceName=\"{}\" request={} available={}",
                    res, need, available.size());
        out[res] = std::vector<TopologyHint>{};
        continue;
      }
      out[res] = GenerateHintsLocked(uid, res, available, {}, need);
    }
    return out;
  }

  absl::Status PrepareDevices(const api::Pod& pod) override {
    const std::string& uid = pod.metadata.uid;
    std::vector<Planned> plan;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending_.find(uid);
      if (it == pending_.end()) return absl::OkStatus();
      plan = it->second.plan;
    }
    std::map<std::string, std::set<std::string>> reuse;
    for (size_t i = 0; i < plan.size(); ++i) {
      const Planned& pl = plan[i];
      if (!pl.allocate) {
        std::set<std::string> ids;
        {
          std::lock_guard<std::mutex> l(mu_);
          if (const Held* h = FindHeldLocked(uid, pl.container, pl.resource)) ids = AllIDs(*h);
        }
        Reuse(pl, ids, &reuse);
        continue;
      }
      if (auto st = AllocateContainer(uid, i, pl, &reuse); !st.ok()) {
        log_->error("Device allocation failed, the pod's devices are released pod=\"{}/{}\" containerName=\"{}\" resourceName=\"{}\" err=\"{}\"",
                    pod.metadata.namespace_, pod.metadata.name, pl.container, pl.resource, st.message());
        RemovePod(uid);
        return st;
      }
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      pending_.erase(uid);
    }
    WriteCheckpoint();
    return absl::OkStatus();
  }

  absl::StatusOr<DeviceRunContainerOptions> GetDeviceRunContainerOptions(const api::Pod& pod, const api::Container& c) override {
    const std::string& uid = pod.metadata.uid;
    DeviceRunContainerOptions out;
    DeviceCheckpoint record;  // what the container gets, recorded on it (kDeviceAllocationAnnotation)
    for (const auto& [res, need] : ResourceLimits(c)) {
      std::shared_ptr<Endpoint> e;
      std::optional<Held> held;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (!IsDevicePluginResourceLocked(res)) continue;
        if (auto it = endpoints_.find(res); it != endpoints_.end()) e = it->second;
        if (const Held* h = FindHeldLocked(uid, c.name, res)) held = *h;
      }
      if (e && e->pre_start) {
        if (!held)
          return absl::NotFoundError("no devices found allocated in local cache for pod " + uid + ", container " + c.name + ", resource " + res);
        if (!e->stub) return absl::UnavailableError("endpoint not found in cache for a registered resource: " + res);
        v1beta1::PreStartContainerRequest rq;
        for (const auto& id : AllIDs(*held)) rq.add_devices_ids(id);
        v1beta1::PreStartContainerResponse rs;
        grpc::ClientContext ctx;
        ctx.set_deadline(Deadline(o_.rpc_timeout));
        KLOG_V(log_, 4)("Issuing a PreStartContainer call for container containerName=\"{}\" podUID=\"{}\"", c.name, uid);
        if (grpc::Status st = e->stub->PreStartContainer(&ctx, rq, &rs); !st.ok())
          return absl::UnavailableError("device plugin PreStartContainer rpc failed with err: " + GoGrpcError(st));
      }
      if (!held) continue;
      record.entries.push_back({uid, c.name, res, held->per_numa, held->alloc_resp});
      if (held->alloc_resp.empty()) continue;
      if (!MergeAllocateResponse(held->alloc_resp, &out))
        log_->error("Stored allocation response does not parse, ignored podUID=\"{}\" containerName=\"{}\" resourceName=\"{}\"", uid, c.name, res);
    }
    if (!record.entries.empty()) {
      record.boot_id = boot_id_;
      out.annotations[kDeviceAllocationAnnotation] = EncodeDeviceCheckpoint(record);
    }
    return out;
  }

  int RestoreFromRuntime(const std::vector<RecordedAllocation>& recorded) override {
    int n = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& r : recorded) n += RestoreOneLocked(r);
    }
    if (n > 0) WriteCheckpoint();  // once for all of them
    return n;
  }

  void RemovePod(const std::string& uid) override {
    bool had = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      pending_.erase(uid);
      if (admitting_.uid == uid) admitting_ = Admitting{};
      had = pod_devices_.erase(uid) > 0;
    }
    if (had) WriteCheckpoint();
  }

  std::map<std::string, std::vector<ContainerDeviceSet>> PodDevices(const std::string& uid) const override {
    std::map<std::string, std::vector<ContainerDeviceSet>> out;
    std::lock_guard<std::mutex> l(mu_);
    auto it = pod_devices_.find(uid);
    if (it == pod_devices_.end()) return out;
    for (const auto& [container, by_res] : it->second)
      for (const auto& [res, h] : by_res)
        for (const auto& [numa, ids] : h.per_numa) {
          if (ids.empty()) continue;
          ContainerDeviceSet s{res, ids, {}};
          if (numa != kNodeWithoutTopology) s.numa_nodes.push_back(numa);
          out[container].push_back(std::move(s));
        }
    return out;
  }

  std::vector<ContainerDeviceSet> AllocatableDevices() const override {
    std::vector<ContainerDeviceSet> out;
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [res, devs] : devices_)
      for (const auto& d : devs) {
        if (d.numa_nodes.empty()) out.push_back({res, {d.id}, {}});
        for (int64_t n : d.numa_nodes) out.push_back({res, {d.id}, {n}});
      }
    return out;
  }

 private:
  struct Endpoint {
    std::string resource, path;
    std::unique_ptr<v1beta1::DevicePlugin::Stub> stub;  // null: known from the checkpoint, not registered again yet
    bool pre_start = false, preferred = false;
    std::mutex ctx_mu;
    grpc::ClientContext* ctx = nullptr;  // the ListAndWatch call under way
    std::condition_variable wake;        // the back-off between streams, cut short by a stop
    std::atomic<bool> cancelled{false};
    std::thread thread;
    std::optional<Steady::time_point> stopped_at;  // under the manager's mu_
  };

  // Devices a container holds of one resource.
  // One running container's record (RestoreFromRuntime); mu_ held. A device another container already holds (the
  // checkpoint's or an earlier record's) is not given twice: the later claim is skipped.
  int RestoreOneLocked(const RecordedAllocation& r) {
    const std::string& uid = r.pod_uid;
    const std::string& container = r.container_name;
    auto rec = DecodeDeviceCheckpoint(r.annotation);
    if (!rec.ok()) {
      log_->error("Device allocation recorded on the container cannot be read, not restored podUID=\"{}\" containerName=\"{}\" err=\"{}\"",
                  uid, container, rec.status().message());
      return 0;
    }
    if (!rec->boot_id.empty() && !boot_id_.empty() && rec->boot_id != boot_id_) return 0;  // from before a reboot
    int n = 0;
    for (auto& e : rec->entries) {
      if (e.pod_uid != uid || e.container_name != container) {
        log_->error("Device allocation recorded on the container names another container, skipped podUID=\"{}\" containerName=\"{}\" "
                    "entryPodUID=\"{}\" entryContainerName=\"{}\"", uid, container, e.pod_uid, e.container_name);
        continue;
      }
      if (e.resource_name.empty() || e.device_ids.empty()) {
        log_->error("Device allocation recorded on the container names no resource or no device, skipped podUID=\"{}\" "
                    "containerName=\"{}\" resourceName=\"{}\"", uid, container, e.resource_name);
        continue;
      }
      if (FindHeldLocked(uid, container, e.resource_name)) continue;  // the checkpoint had it
      auto in_use = InUseLocked(e.resource_name);
      std::string taken;
      for (const auto& [numa, ids] : e.device_ids)
        for (const auto& id : ids)
          if (in_use.count(id) && taken.empty()) taken = id;
      if (!taken.empty()) {
        log_->error("Device allocation recorded on the container names a device another container holds, skipped podUID=\"{}\" "
                    "containerName=\"{}\" resourceName=\"{}\" deviceID=\"{}\"", uid, container, e.resource_name, taken);
        continue;
      }
      Held& h = pod_devices_[uid][container][e.resource_name];
      h.per_numa = std::move(e.device_ids);
      h.alloc_resp = std::move(e.alloc_resp);
      ++n;
      log_->info("Restored device allocation from the running container podUID=\"{}\" containerName=\"{}\" resourceName=\"{}\" "
                 "devices=\"{}\"", uid, container, e.resource_name, absl::StrJoin(AllIDs(h), ","));
    }
    return n;
  }

  struct Held {
    std::map<int64_t, std::vector<std::string>> per_numa;
    std::string alloc_resp;  // empty until the plugin answered Allocate
  };

  struct Planned {
    std::string container;
    bool init = false, restartable = false;
    std::string resource;
    int64_t need = 0;
    bool allocate = false;              // false: held already (or running before the restart)
    std::vector<std::string> reserved;  // devices set aside at admission (beyond those reused from init containers)
    bool picked = false;                // the worker has picked the devices: the reservation is over
  };
  struct Pending {
    std::vector<Planned> plan;
  };
  // The admission under way: the sync loop admits one pod at a time, container by container.
  struct Admitting {
    std::string uid;
    std::set<std::string> seen;  // containers allocated so far
    bool asks = false;           // the pod asks for a device-plugin resource at all
    bool ready = true;           // every source had spoken when it began
    std::map<std::string, std::set<std::string>> reuse;  // resource -> devices the init containers so far leave to the ones after
  };

  // A new admission (another pod, or a container seen again) starts afresh and releases the devices of pods gone.
  void BeginAdmission(const api::Pod& pod, const std::string& container) {
    const std::string& uid = pod.metadata.uid;
    {
      std::lock_guard<std::mutex> l(mu_);
      const bool same = admitting_.uid == uid && (container.empty() ? admitting_.seen.empty() : !admitting_.seen.count(container));
      if (same) return;
      admitting_ = Admitting{};
      admitting_.uid = uid;
      pending_.erase(uid);
      // Most pods ask for no device: they cost the loop one look, no list of the active pods.
      auto asks = [this](const api::Container& c) {
        for (const auto& limit : ResourceLimits(c))
          if (IsDevicePluginResourceLocked(limit.first)) return true;
        return false;
      };
      admitting_.asks = std::any_of(pod.spec.init_containers.begin(), pod.spec.init_containers.end(), asks) ||
                        std::any_of(pod.spec.containers.begin(), pod.spec.containers.end(), asks);
      if (!admitting_.asks) return;
    }
    bool ready = !d_.sources_ready || d_.sources_ready();
    bool pruned = false;
    if (ready && d_.active_pods) {
      auto active = d_.active_pods();
      std::lock_guard<std::mutex> l(mu_);
      pruned = PruneLocked(active, uid);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (admitting_.uid == uid) admitting_.ready = ready;
    }
    if (pruned) WriteCheckpoint();
  }

  absl::Status VisitLocked(const std::string& uid, const api::Container& c, bool init, const TopologyHint& affinity, Pending* p) {
    const bool restartable = init && api::IsRestartableInitContainer(c);
    for (const auto& [res, need] : ResourceLimits(c)) {
      if (!IsDevicePluginResourceLocked(res)) continue;
      Planned pl{c.name, init, restartable, res, need, false, {}, false};
      if (const Held* h = FindHeldLocked(uid, c.name, res)) {
        auto ids = AllIDs(*h);
        if (static_cast<int64_t>(ids.size()) != need)
          return absl::InvalidArgumentError("pod \"" + uid + "\" container \"" + c.name + "\" changed request for resource \"" + res +
                                            "\" from " + std::to_string(ids.size()) + " to " + std::to_string(need));
        KLOG_V(log_, 3)("Found pre-allocated devices for resource on pod resourceName=\"{}\" containerName=\"{}\" podUID=\"{}\"", res,
                        c.name, uid);
        Reuse(pl, ids, &admitting_.reuse);
        p->plan.push_back(pl);
        continue;
      }
      // A restarted kubelet finding the container running: it has its devices already.
      if (!admitting_.ready && d_.container_running && d_.container_running(uid, c.name)) {
        KLOG_V(log_, 3)("Container detected running, nothing to do deviceNumber={} resourceName=\"{}\" podUID=\"{}\" containerName=\"{}\"",
                        need, res, uid, c.name);
        p->plan.push_back(pl);
        continue;
      }
      if (!devices_.count(res)) return absl::FailedPreconditionError("cannot allocate unregistered device " + res);
      if (HealthyLocked(res).empty())
        return absl::FailedPreconditionError("no healthy devices present; cannot allocate unhealthy devices " + res);
      std::set<std::string> chosen;
      for (const auto& id : admitting_.reuse[res])
        if (static_cast<int64_t>(chosen.size()) < need) chosen.insert(id);
      int64_t n = need - static_cast<int64_t>(chosen.size());
      if (n > 0) {
        auto available = AvailableLocked(res, nullptr);
        if (static_cast<int64_t>(available.size()) < n)
          return absl::ResourceExhaustedError("requested number of devices unavailable for " + res + ". Requested: " + std::to_string(n) +
                                              ", Available: " + std::to_string(available.size()));
        // The affinity's NUMA nodes first, then the others, then devices without topology (as the worker will pick).
        for (const auto& group : SplitByAffinityLocked(res, available, affinity))
          for (const auto& id : group)
            if (static_cast<int64_t>(pl.reserved.size()) < n) pl.reserved.push_back(id);
      }
      chosen.insert(pl.reserved.begin(), pl.reserved.end());
      Reuse(pl, chosen, &admitting_.reuse);
      pl.allocate = true;
      p->plan.push_back(pl);
    }
    return absl::OkStatus();
  }

  // A pod's request per resource: the larger of what its init containers need at once and what runs beside each other.
  std::map<std::string, int64_t> PodDeviceRequests(const api::Pod& pod) const {
    std::map<std::string, int64_t> app, init_peak, sidecars;
    for (const auto& c : pod.spec.init_containers) {
      if (api::IsRestartableInitContainer(c)) {
        for (const auto& [res, n] : ResourceLimits(c)) sidecars[res] += n;
        continue;
      }
      for (const auto& [res, n] : ResourceLimits(c)) init_peak[res] = std::max(init_peak[res], n + sidecars[res]);
    }
    for (const auto& c : pod.spec.containers)
      for (const auto& [res, n] : ResourceLimits(c)) app[res] += n;
    for (const auto& [res, n] : sidecars) app[res] += n;
    for (const auto& [res, n] : init_peak) app[res] = std::max(app[res], n);
    return app;
  }

  bool HasTopologyLocked(const std::string& res) const {
    auto d = devices_.find(res);
    if (d == devices_.end()) return false;
    return std::any_of(d->second.begin(), d->second.end(), [](const PluginDevice& x) { return !x.numa_nodes.empty(); });
  }

  // A device's NUMA nodes: as its plugin lists it, else as the pod's checkpointed allocation recorded it.
  std::vector<int64_t> NodesOfLocked(const std::string& uid, const std::string& res, const std::string& id) const {
    if (auto d = devices_.find(res); d != devices_.end())
      for (const auto& dev : d->second)
        if (dev.id == id) return dev.numa_nodes;
    std::vector<int64_t> out;
    if (auto p = pod_devices_.find(uid); p != pod_devices_.end())
      for (const auto& [container, by_res] : p->second)
        if (auto r = by_res.find(res); r != by_res.end())
          for (const auto& [numa, ids] : r->second.per_numa)
            if (numa != kNodeWithoutTopology && std::find(ids.begin(), ids.end(), id) != ids.end()) out.push_back(numa);
    return out;
  }

  // Upstream's generateDeviceTopologyHints: every NUMA node set with enough devices for the request, preferred when
  // as small as the request allows on this machine.
  std::vector<TopologyHint> GenerateHintsLocked(const std::string& uid, const std::string& res, const std::vector<std::string>& available,
                                                const std::set<std::string>& reusable, int64_t request) const {
    int min_size = static_cast<int>(o_.numa_nodes.size());
    std::vector<TopologyHint> hints;
    const auto dev = devices_.find(res);
    std::vector<std::vector<int64_t>> avail_nodes, reuse_nodes;
    for (const auto& id : available) avail_nodes.push_back(NodesOfLocked(uid, res, id));
    for (const auto& id : reusable) reuse_nodes.push_back(NodesOfLocked(uid, res, id));
    IterateBitMasks(o_.numa_nodes, [&](const BitMask& mask) {
      int64_t in_mask = 0;
      if (dev != devices_.end())
        for (const auto& d : dev->second) in_mask += mask.AnySet(d.numa_nodes) ? 1 : 0;
      if (in_mask >= request && mask.Count() < min_size) min_size = mask.Count();
      int64_t matching = 0;
      for (const auto& nodes : reuse_nodes) {
        if (nodes.empty()) continue;
        if (!mask.AnySet(nodes)) return;  // every reusable device must be in the set
        ++matching;
      }
      for (const auto& nodes : avail_nodes) matching += mask.AnySet(nodes) ? 1 : 0;
      if (matching < request) return;
      hints.push_back(TopologyHint{mask, false});
    });
    for (auto& h : hints) h.preferred = h.affinity->Count() == min_size;
    return hints;
  }

  // Upstream's filterByAffinity: devices on the affinity's NUMA nodes, on other nodes, without topology; within each
  // group by their node (nodes with fewer devices first), then by ID.
  std::array<std::vector<std::string>, 3> SplitByAffinityLocked(const std::string& res, const std::vector<std::string>& ids,
                                                                 const TopologyHint& affinity) const {
    std::array<std::vector<std::string>, 3> out;
    if (!affinity.affinity || !HasTopologyLocked(res)) {
      out[2] = ids;
      return out;
    }
    const BitMask& mask = *affinity.affinity;
    std::map<int64_t, std::vector<std::string>> per_node;
    std::map<std::string, std::vector<int64_t>> nodes_of;
    for (const auto& id : ids) {
      auto nodes = NodesOfLocked("", res, id);
      if (nodes.empty()) nodes.push_back(kNodeWithoutTopology);
      for (int64_t n : nodes) per_node[n].push_back(id);
      nodes_of[id] = nodes;
    }
    std::vector<int64_t> order;
    for (const auto& [n, list] : per_node) order.push_back(n);
    auto rank = [&](int64_t n) { return n == kNodeWithoutTopology ? 2 : mask.IsSet(static_cast<int>(n)) ? 0 : 1; };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      if (rank(a) != rank(b)) return rank(a) < rank(b);
      return per_node[a].size() < per_node[b].size();
    });
    std::set<std::string> placed;
    for (int64_t n : order)
      for (const auto& id : per_node[n])
        if (placed.insert(id).second) out[rank(n)].push_back(id);
    return out;
  }


  // Devices set aside at admission and not picked yet, by every pod (but the one entry given).
  std::set<std::string> ReservedLocked(const std::string& res, const Planned* except) const {
    std::set<std::string> out;
    for (const auto& [uid, p] : pending_)
      for (const auto& pl : p.plan)
        if (&pl != except && pl.allocate && !pl.picked && pl.resource == res) out.insert(pl.reserved.begin(), pl.reserved.end());
    return out;
  }

  // Healthy devices nobody holds or has set aside.
  std::vector<std::string> AvailableLocked(const std::string& res, const Planned* except) const {
    std::vector<std::string> out;
    auto reserved = ReservedLocked(res, except);
    for (const auto& id : FreeLocked(res))
      if (!reserved.count(id)) out.push_back(id);
    return out;
  }

  Planned* FindPlannedLocked(const std::string& uid, size_t index, const Planned& pl) {
    auto p = pending_.find(uid);
    if (p == pending_.end() || index >= p->second.plan.size()) return nullptr;
    Planned& x = p->second.plan[index];
    return x.container == pl.container && x.resource == pl.resource ? &x : nullptr;
  }

  static std::set<std::string> AllIDs(const Held& h) {
    std::set<std::string> out;
    for (const auto& [numa, ids] : h.per_numa) out.insert(ids.begin(), ids.end());
    return out;
  }

  static void Reuse(const Planned& pl, const std::set<std::string>& ids, std::map<std::string, std::set<std::string>>* reuse) {
    auto& r = (*reuse)[pl.resource];
    if (pl.init && !pl.restartable) {
      r.insert(ids.begin(), ids.end());
    } else {
      for (const auto& id : ids) r.erase(id);
    }
  }

  const Held* FindHeldLocked(const std::string& uid, const std::string& container, const std::string& res) const {
    auto p = pod_devices_.find(uid);
    if (p == pod_devices_.end()) return nullptr;
    auto c = p->second.find(container);
    if (c == p->second.end()) return nullptr;
    auto r = c->second.find(res);
    return r == c->second.end() ? nullptr : &r->second;
  }

  bool IsDevicePluginResourceLocked(const std::string& res) const {
    if (devices_.count(res)) return true;
    for (const auto& [uid, containers] : pod_devices_)
      for (const auto& [c, by_res] : containers)
        if (by_res.count(res)) return true;
    return false;
  }

  std::set<std::string> HealthyLocked(const std::string& res) const {
    std::set<std::string> out;
    auto e = endpoints_.find(res);
    if (e == endpoints_.end() || e->second->stopped_at) return out;
    if (auto d = devices_.find(res); d != devices_.end())
      for (const auto& dev : d->second)
        if (dev.healthy) out.insert(dev.id);
    return out;
  }

  std::set<std::string> InUseLocked(const std::string& res) const {
    std::set<std::string> out;
    for (const auto& [uid, containers] : pod_devices_)
      for (const auto& [c, by_res] : containers)
        if (auto r = by_res.find(res); r != by_res.end())
          for (const auto& [numa, ids] : r->second.per_numa) out.insert(ids.begin(), ids.end());
    return out;
  }

  std::vector<std::string> FreeLocked(const std::string& res) const {
    std::vector<std::string> out;
    auto used = InUseLocked(res);
    for (const auto& id : HealthyLocked(res))
      if (!used.count(id)) out.push_back(id);
    return out;
  }

  // Devices of pods no longer active go back to the pool (never the pod being admitted).
  bool PruneLocked(const std::set<std::string>& active, const std::string& admitting) {
    bool changed = false;
    for (auto it = pod_devices_.begin(); it != pod_devices_.end();) {
      if (it->first != admitting && !active.count(it->first)) {
        KLOG_V(log_, 3)("Pod's devices released, the pod is no longer active podUID=\"{}\"", it->first);
        it = pod_devices_.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    for (auto it = pending_.begin(); it != pending_.end();)
      it = it->first != admitting && !active.count(it->first) ? pending_.erase(it) : std::next(it);
    return changed;
  }

  // Upstream's devicesToAllocate on the pod's worker: devices reused from init containers, then (with a topology
  // affinity) those on its NUMA nodes, the plugin's preference where it offers one, then the rest; never a device
  // another pod has set aside.
  absl::Status AllocateContainer(const std::string& uid, size_t index, const Planned& pl, std::map<std::string, std::set<std::string>>* reuse) {
    const std::string& res = pl.resource;
    std::vector<std::string> chosen;
    std::array<std::vector<std::string>, 3> groups;  // aligned, unaligned, without topology
    std::shared_ptr<Endpoint> e;
    const TopologyHint affinity = d_.affinity ? d_.affinity->GetAffinity(uid, pl.container) : TopologyHint{};
    {
      std::lock_guard<std::mutex> l(mu_);
      const Planned* mine = FindPlannedLocked(uid, index, pl);
      if (!mine) return absl::AbortedError("the pod's reservation was released");
      if (auto it = endpoints_.find(res); it != endpoints_.end()) e = it->second;
      for (const auto& id : (*reuse)[res])
        if (static_cast<int64_t>(chosen.size()) < pl.need) chosen.push_back(id);
      if (static_cast<int64_t>(chosen.size()) < pl.need) {
        std::vector<std::string> candidates;
        std::set<std::string> taken(chosen.begin(), chosen.end());
        for (const auto& id : AvailableLocked(res, mine))
          if (!taken.count(id)) candidates.push_back(id);
        groups = SplitByAffinityLocked(res, candidates, affinity);
      }
    }
    if (!e || !e->stub) return absl::UnavailableError("unknown Device Plugin " + res);
    const int64_t from_reuse = static_cast<int64_t>(chosen.size());
    const int64_t needed = pl.need - from_reuse;
    const bool within_aligned = needed > 0 && needed < static_cast<int64_t>(groups[0].size());
    std::vector<std::string> preferred;
    if (needed > 0 && e->preferred) {
      v1beta1::PreferredAllocationRequest rq;
      auto* cr = rq.add_container_requests();
      for (size_t g = 0; g < (within_aligned ? 1u : 3u); ++g)
        for (const auto& id : groups[g]) cr->add_available_deviceids(id);
      for (const auto& id : chosen) {
        cr->add_available_deviceids(id);
        cr->add_must_include_deviceids(id);
      }
      cr->set_allocation_size(static_cast<int32_t>(pl.need));
      v1beta1::PreferredAllocationResponse rs;
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(o_.rpc_timeout));
      KLOG_V(log_, 4)("Issuing a GetPreferredAllocation call for container resourceName=\"{}\" containerName=\"{}\" podUID=\"{}\"", res,
                      pl.container, uid);
      if (grpc::Status st = e->stub->GetPreferredAllocation(&ctx, rq, &rs); !st.ok())
        return absl::UnavailableError("device plugin GetPreferredAllocation rpc failed with err: " + GoGrpcError(st));
      if (rs.container_responses_size() > 0)
        for (const auto& id : rs.container_responses(0).deviceids()) preferred.push_back(id);
    }
    Held held;
    {
      std::lock_guard<std::mutex> l(mu_);
      Planned* mine = FindPlannedLocked(uid, index, pl);
      if (!mine) return absl::AbortedError("the pod's reservation was released");
      // Picked now, under the lock, among what is still free: other pods' workers pick at the same time.
      auto free = AvailableLocked(res, mine);
      std::set<std::string> free_set(free.begin(), free.end()), taken(chosen.begin(), chosen.end());
      std::set<std::string> aligned(groups[0].begin(), groups[0].end());
      auto take = [&](const std::vector<std::string>& from, const std::set<std::string>* within) {
        for (const auto& id : from)
          if (static_cast<int64_t>(chosen.size()) < pl.need && free_set.count(id) && (!within || within->count(id)) && taken.insert(id).second)
            chosen.push_back(id);
      };
      if (within_aligned) {
        take(preferred, &aligned);
        take(groups[0], nullptr);
      } else {
        take(groups[0], nullptr);  // all aligned ones first: the alignment the topology manager promised
        take(preferred, nullptr);
        take(groups[1], nullptr);
        take(groups[2], nullptr);
      }
      if (static_cast<int64_t>(chosen.size()) < pl.need)
        return absl::ResourceExhaustedError("requested number of devices unavailable for " + res + ". Requested: " +
                                            std::to_string(needed) + ", Available: " + std::to_string(free.size()));
      std::map<std::string, const PluginDevice*> by_id;
      if (auto d = devices_.find(res); d != devices_.end())
        for (const auto& dev : d->second) by_id[dev.id] = &dev;
      for (const auto& id : chosen) {
        auto it = by_id.find(id);
        if (it == by_id.end() || it->second->numa_nodes.empty()) {
          held.per_numa[kNodeWithoutTopology].push_back(id);
        } else {
          for (int64_t n : it->second->numa_nodes) held.per_numa[n].push_back(id);
        }
      }
      pod_devices_[uid][pl.container][res] = held;  // counted in use from now on
      mine->picked = true;                         // and no longer set aside
    }
    v1beta1::AllocateRequest rq;
    auto* cr = rq.add_container_requests();
    for (const auto& id : chosen) cr->add_devices_ids(id);
    v1beta1::AllocateResponse rs;
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(o_.rpc_timeout));
    KLOG_V(log_, 4)("Making allocation request for device plugin resourceName=\"{}\" devices={}", res, GoQuoted(chosen));
    auto start = Steady::now();
    grpc::Status st = e->stub->Allocate(&ctx, rq, &rs);
    if (d_.on_allocation) d_.on_allocation(res, std::chrono::duration<double>(Steady::now() - start).count());
    if (!st.ok()) return absl::UnavailableError(GoGrpcError(st));
    if (rs.container_responses_size() == 0)
      return absl::InvalidArgumentError("no containers return in allocation response " + rs.ShortDebugString());
    {
      std::lock_guard<std::mutex> l(mu_);
      auto p = pod_devices_.find(uid);
      if (p == pod_devices_.end()) return absl::AbortedError("the pod's devices were released");
      p->second[pl.container][res].alloc_resp = rs.container_responses(0).SerializeAsString();
    }
    Reuse(pl, std::set<std::string>(chosen.begin(), chosen.end()), reuse);
    return absl::OkStatus();
  }

  // ---- checkpoint ----

  std::string CheckpointPath() const { return o_.socket_dir + "/" + kDeviceCheckpoint; }

  std::string ReadBootID() const {
    std::ifstream in(o_.boot_id_file);
    std::string id;
    std::getline(in, id);
    return id;
  }

  void ReadCheckpoint() {
    std::ifstream in(CheckpointPath(), std::ios::binary);
    if (!in) return;
    std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto cp = DecodeDeviceCheckpoint(blob);
    if (!cp.ok()) {
      std::string why = absl::IsDataLoss(cp.status()) ? "device plugin checkpoint file \"" + std::string(kDeviceCheckpoint) + "\" is corrupted"
                                                     : "failed to read checkpoint file \"" + std::string(kDeviceCheckpoint) +
                                                           "\": " + std::string(cp.status().message());
      log_->error("Continue after failing to read checkpoint file. Device allocation info may NOT be up-to-date err=\"{}\"", why);
      return;
    }
    const std::string& boot = boot_id_;
    bool rebooted = !cp->boot_id.empty() && !boot.empty() && cp->boot_id != boot;
    if (rebooted) log_->info("The node booted since the device checkpoint was written, its allocations are not restored");
    std::lock_guard<std::mutex> l(mu_);
    size_t n = 0;
    if (!rebooted)
      for (auto& e : cp->entries) {
        if (e.pod_uid.empty() || e.container_name.empty() || e.resource_name.empty()) continue;
        Held& h = pod_devices_[e.pod_uid][e.container_name][e.resource_name];
        h.per_numa = std::move(e.device_ids);
        h.alloc_resp = std::move(e.alloc_resp);
        ++n;
      }
    // Until their plugins register again the resources stay, with no device healthy.
    for (const auto& [res, ids] : cp->registered) {
      if (devices_.count(res)) continue;
      devices_[res] = {};
      auto e = std::make_shared<Endpoint>();
      e->resource = res;
      e->stopped_at = Steady::now();
      endpoints_[res] = e;
    }
    log_->info("Read device plugin checkpoint path=\"{}\" entries={} resources={}", CheckpointPath(), n, cp->registered.size());
  }

  void WriteCheckpoint() {
    std::lock_guard<std::mutex> w(ckpt_mu_);
    DeviceCheckpoint cp;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [uid, containers] : pod_devices_)
        for (const auto& [c, by_res] : containers)
          for (const auto& [res, h] : by_res) cp.entries.push_back({uid, c, res, h.per_numa, h.alloc_resp});
      for (const auto& [res, devs] : devices_) {
        auto& ids = cp.registered[res];
        for (const auto& id : HealthyLocked(res)) ids.push_back(id);
      }
    }
    cp.boot_id = boot_id_;
    const std::string path = CheckpointPath(), tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << EncodeDeviceCheckpoint(cp);
      if (!out) {
        log_->error("Failed to write the device plugin checkpoint path=\"{}\"", tmp);
        return;
      }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) log_->error("Failed to write the device plugin checkpoint path=\"{}\" err=\"{}\"", path, ec.message());
  }

  // ---- plugins ----

  absl::Status Connect(const std::string& resource, const std::string& path, const v1beta1::DevicePluginOptions* given) {
    auto ch = grpc::CreateChannel("unix://" + path, grpc::InsecureChannelCredentials());
    if (!ch->WaitForConnected(Deadline(o_.dial_timeout)))
      return absl::UnavailableError("failed to dial device plugin: " + path + ": not connected within the deadline");
    auto e = std::make_shared<Endpoint>();
    e->resource = resource;
    e->path = path;
    e->stub = v1beta1::DevicePlugin::NewStub(ch);
    v1beta1::DevicePluginOptions opts;
    if (given) {
      opts = *given;
    } else {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(o_.dial_timeout));
      if (grpc::Status st = e->stub->GetDevicePluginOptions(&ctx, v1beta1::Empty(), &opts); !st.ok())
        return absl::UnavailableError("failed to get device plugin options: " + GoGrpcError(st));
    }
    e->pre_start = opts.pre_start_required();
    e->preferred = opts.get_preferred_allocation_available();
    std::shared_ptr<Endpoint> old;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopped_) return absl::CancelledError("the device manager is stopping");
      if (auto it = endpoints_.find(resource); it != endpoints_.end()) old = it->second;
      endpoints_[resource] = e;
      // Started under the lock: whoever stops the endpoint (a later registration, the grace period) finds its thread.
      e->thread = std::thread([this, e] { GuardedRun("device plugin ListAndWatch " + e->resource, [this, e] { Watch(e); }); });
    }
    if (old) StopEndpoint(old);  // a plugin that registers again replaces its old endpoint
    log_->info("Registered endpoint resourceName=\"{}\" endpoint=\"{}\"", resource, path);
    return absl::OkStatus();
  }

  // The plugin's device list, kept open; a broken stream counts the devices unhealthy and is dialed again with
  // back-off until the plugin registers anew or the grace period ends.
  void Watch(const std::shared_ptr<Endpoint>& e) {
    auto backoff = std::chrono::milliseconds(500);
    while (!e->cancelled) {
      grpc::ClientContext ctx;
      {
        std::lock_guard<std::mutex> l(e->ctx_mu);
        if (e->cancelled) return;
        e->ctx = &ctx;
      }
      auto reader = e->stub->ListAndWatch(&ctx, v1beta1::Empty());
      v1beta1::ListAndWatchResponse resp;
      bool streamed = false;
      while (reader->Read(&resp)) {
        streamed = true;
        backoff = std::chrono::milliseconds(500);
        std::vector<PluginDevice> devs = DevicesFrom(e->resource, resp);
        std::lock_guard<std::mutex> l(mu_);
        auto it = endpoints_.find(e->resource);
        if (it == endpoints_.end() || it->second != e) break;  // replaced meanwhile
        devices_[e->resource] = std::move(devs);
        e->stopped_at.reset();
      }
      auto st = reader->Finish();
      {
        std::lock_guard<std::mutex> l(e->ctx_mu);
        e->ctx = nullptr;
      }
      if (e->cancelled) return;
      if (streamed) {
        log_->info("ListAndWatch ended resourceName=\"{}\" err=\"{}\"", e->resource, st.error_message());
      } else {
        KLOG_V(log_, 4)("ListAndWatch not established, dialing again resourceName=\"{}\" err=\"{}\" retryIn=\"{}ms\"", e->resource,
                        st.error_message(), backoff.count());
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = endpoints_.find(e->resource);
        if (it == endpoints_.end() || it->second != e) return;
        if (!e->stopped_at) e->stopped_at = Steady::now();
      }
      std::unique_lock<std::mutex> l(e->ctx_mu);
      e->wake.wait_for(l, backoff, [&] { return e->cancelled.load(); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
    }
  }

  void StopEndpoint(const std::shared_ptr<Endpoint>& e) {
    {
      std::lock_guard<std::mutex> l(e->ctx_mu);
      e->cancelled = true;
      if (e->ctx) e->ctx->TryCancel();
    }
    e->wake.notify_all();
    if (e->thread.joinable() && e->thread.get_id() != std::this_thread::get_id()) e->thread.join();
  }

  DeviceManagerOptions o_;
  DeviceManagerDeps d_;
  RegistrationService service_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  std::mutex ckpt_mu_;  // one checkpoint write at a time, in order
  std::string boot_id_;  // read at Start
  bool stopped_ = false;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_;
  std::map<std::string, std::vector<PluginDevice>> devices_;
  std::map<std::string, std::map<std::string, std::map<std::string, Held>>> pod_devices_;  // uid -> container -> resource
  std::map<std::string, Pending> pending_;                                                // admitted, not allocated yet
  Admitting admitting_;
};

grpc::Status RegistrationService::Register(grpc::ServerContext*, const v1beta1::RegisterRequest* r, v1beta1::Empty*) {
  absl::Status st = Guarded("device plugin Register", [&] {
    return m_->RegisterDevicePlugin(r->version(), r->endpoint(), r->resource_name(), r->options().pre_start_required(),
                                    r->options().get_preferred_allocation_available());
  });
  if (!st.ok()) return grpc::Status(grpc::StatusCode::UNKNOWN, std::string(st.message()));
  return grpc::Status::OK;
}

}  // namespace

std::unique_ptr<DeviceManager> NewDeviceManager(DeviceManagerOptions o, DeviceManagerDeps d) {
  return std::make_unique<DeviceManagerImpl>(std::move(o), std::move(d));
}

}  // namespace kubelet::cm
