#include "kubelet/nodestatus/node_status.h"
#include "kubelet/util/json.h"
#include "kubelet/util/guard.h"

#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "kubelet/api/quantity.h"
#include "kubelet/util/node_info.h"

namespace kubelet::nodestatus {
namespace {

using json = nlohmann::json;

std::string ReadTrim(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

std::string OsImage() {
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      std::string v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return "Linux";
}

int64_t Reserved(const std::map<std::string, std::string>& m, const char* res, bool milli) {
  auto it = m.find(res);
  if (it == m.end()) return 0;
  auto q = api::ParseQuantity(it->second);
  if (!q.ok()) return 0;
  return milli ? q->MilliValue() : q->Value();
}

// An eviction threshold for a signal, absolute or as a percentage of capacity.
int64_t Threshold(const std::map<std::string, std::string>& m, const char* signal, int64_t capacity) {
  auto it = m.find(signal);
  if (it == m.end() || it->second.empty()) return 0;
  if (it->second.back() == '%') return static_cast<int64_t>(capacity * std::strtod(it->second.c_str(), nullptr) / 100.0);
  auto q = api::ParseQuantity(it->second);
  return q.ok() ? q->Value() : 0;
}

std::string Ki(int64_t bytes) { return std::to_string(std::max<int64_t>(0, bytes) / 1024) + "Ki"; }

api::NodeCondition Condition(const std::string& type, bool status, const std::string& reason, const std::string& message,
                              const api::NodeStatus& old, TimePoint now) {
  api::NodeCondition c{type, status ? "True" : "False", now, now, reason, message};
  // The transition time stays while the status does.
  for (const auto& o : old.conditions)
    if (o.type == type && o.status == c.status) c.last_transition_time = o.last_transition_time;
  return c;
}

}  // namespace

Readiness ReadinessFrom(const absl::StatusOr<cri::rt::StatusResponse>& st, const network::CNIRunner* cni) {
  Readiness r;
  if (!st.ok()) {
    r.message = "container runtime is down: " + std::string(st.status().message());
    return r;
  }
  std::string missing;
  for (const auto& c : st->status().conditions()) {
    if (c.type() == "RuntimeReady") r.runtime_ready = c.status();
    if (c.type() == "NetworkReady") r.network_ready = c.status();
    if (!c.status()) missing += (missing.empty() ? "" : ", ") + c.type() + "=false reason:" + c.reason() + " message:" + c.message();
  }
  if (cni) {
    auto ready = cni->Ready();
    r.network_ready = ready.ok();
    if (!r.runtime_ready) {
      r.message = "container runtime not ready: " + missing;
    } else if (!ready.ok()) {
      r.message = "network plugin not ready: " + std::string(ready.message());
    }
    return r;
  }
  if (!r.runtime_ready) {
    r.message = "container runtime not ready: " + missing;
  } else if (!r.network_ready) {
    r.message = "container runtime network not ready: " + missing;
  }
  return r;
}

std::pair<int64_t, int64_t> AllocatableCpuMemory(const NodeOptions& o) {
  int64_t cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int64_t mem = MachineMemoryBytes();
  int64_t cpu_alloc = cpus * 1000 - Reserved(o.system_reserved, "cpu", true) - Reserved(o.kube_reserved, "cpu", true);
  int64_t mem_alloc = mem - Reserved(o.system_reserved, "memory", false) - Reserved(o.kube_reserved, "memory", false) -
                      Threshold(o.eviction_hard, "memory.available", mem);
  return {cpu_alloc, mem_alloc};
}

api::Node InitialNode(const NodeOptions& o) {
  api::Node n;
  n.metadata.name = o.node_name;
  n.metadata.labels = {{"kubernetes.io/hostname", o.hostname.empty() ? o.node_name : o.hostname},
                       {"kubernetes.io/os", "linux"},
                       {"kubernetes.io/arch", "amd64"},
                       {"beta.kubernetes.io/os", "linux"},
                       {"beta.kubernetes.io/arch", "amd64"}};
  for (const auto& [k, v] : o.node_labels) n.metadata.labels[k] = v;
  n.metadata.annotations = {{"volumes.kubernetes.io/controller-managed-attach-detach", "true"}};
  n.spec.taints = o.register_with_taints;
  n.spec.provider_id = o.provider_id;
  n.spec.pod_cidr = o.pod_cidr;
  if (!o.pod_cidr.empty()) n.spec.pod_cidrs = {o.pod_cidr};
  return n;
}

api::NodeStatus ComputeNodeStatus(const NodeOptions& o, const NodeProviders& p, const api::NodeStatus& old, TimePoint now) {
  api::NodeStatus s;
  int64_t cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int64_t mem = MachineMemoryBytes();
  struct statvfs vfs {};
  int64_t disk = ::statvfs(o.root_dir.c_str(), &vfs) == 0 ? static_cast<int64_t>(vfs.f_blocks) * vfs.f_frsize : 0;
  s.capacity = {{"cpu", std::to_string(cpus)}, {"memory", Ki(mem)}, {"ephemeral-storage", Ki(disk)},
                {"pods", std::to_string(o.max_pods)}, {"hugepages-1Gi", "0"}, {"hugepages-2Mi", "0"}};
  auto [cpu_alloc, mem_alloc] = AllocatableCpuMemory(o);
  int64_t disk_alloc = disk - Reserved(o.system_reserved, "ephemeral-storage", false) -
                       Reserved(o.kube_reserved, "ephemeral-storage", false) -
                       Threshold(o.eviction_hard, "nodefs.available", disk);
  s.allocatable = s.capacity;
  s.allocatable["cpu"] = cpu_alloc % 1000 == 0 ? std::to_string(cpu_alloc / 1000) : std::to_string(cpu_alloc) + "m";
  s.allocatable["memory"] = Ki(mem_alloc);
  s.allocatable["ephemeral-storage"] = std::to_string(std::max<int64_t>(0, disk_alloc));
  // Device plugins' resources, as upstream's MachineInfo setter: a plugin gone past its grace period says 0.
  if (p.extended_resources) {
    auto ext = p.extended_resources();
    for (const auto& [name, n] : ext.capacity) s.capacity[name] = std::to_string(n);
    for (const auto& [name, n] : ext.allocatable) s.allocatable[name] = std::to_string(n);
    for (const auto& name : ext.removed) s.capacity[name] = s.allocatable[name] = "0";
  }

  Readiness r = p.readiness ? p.readiness() : Readiness{};
  bool ready = r.runtime_ready && r.network_ready;
  std::vector<std::string> pressure = p.pressure ? p.pressure() : std::vector<std::string>{};
  auto under = [&](const char* c) { return std::find(pressure.begin(), pressure.end(), c) != pressure.end(); };
  bool mem_p = under("MemoryPressure"), disk_p = under("DiskPressure"), pid_p = under("PIDPressure");
  s.conditions.push_back(Condition("MemoryPressure", mem_p, mem_p ? "KubeletHasInsufficientMemory" : "KubeletHasSufficientMemory",
                                   mem_p ? "kubelet has insufficient memory available" : "kubelet has sufficient memory available", old, now));
  s.conditions.push_back(Condition("DiskPressure", disk_p, disk_p ? "KubeletHasDiskPressure" : "KubeletHasNoDiskPressure",
                                   disk_p ? "kubelet has disk pressure" : "kubelet has no disk pressure", old, now));
  s.conditions.push_back(Condition("PIDPressure", pid_p, pid_p ? "KubeletHasInsufficientPID" : "KubeletHasSufficientPID",
                                   pid_p ? "kubelet has insufficient PID available" : "kubelet has sufficient PID available", old, now));
  s.conditions.push_back(Condition("Ready", ready, ready ? "KubeletReady" : "KubeletNotReady",
                                   ready ? "kubelet is posting ready status" : r.message, old, now));
  if (!o.node_ip.empty()) s.addresses.push_back({"InternalIP", o.node_ip});
  s.addresses.push_back({"Hostname", o.hostname.empty() ? o.node_name : o.hostname});
  s.kubelet_endpoint_port = o.kubelet_port;
  utsname u{};
  ::uname(&u);
  s.node_info = {ReadTrim("/etc/machine-id"),
                 ReadTrim("/sys/class/dmi/id/product_uuid"),
                 ReadTrim("/proc/sys/kernel/random/boot_id"),
                 u.release,
                 OsImage(),
                 p.runtime_version ? p.runtime_version() : "",
                 kKubeletVersion,
                 "",
                 "linux",
                 "amd64"};
  // As upstream's VolumesInUse setter: reported only once the volume manager's reconciler has synced.
  std::optional<std::vector<std::string>> in_use = p.volumes_in_use ? p.volumes_in_use() : std::nullopt;
  s.volumes_in_use = in_use ? *in_use : old.volumes_in_use;
  return s;
}

NodeStatusManager::NodeStatusManager(client::ApiClient* api, const Clock* clock, NodeOptions o, NodeProviders p)
    : api_(api), clock_(clock), o_(std::move(o)), p_(std::move(p)), log_(log::Get("nodestatus")) {}

NodeStatusManager::~NodeStatusManager() { Stop(); }

void NodeStatusManager::Start() {
  // The kubelet's own Node, watched as upstream's node informer: admission reads its labels as they are now
  // (kubectl label node), without a request per pod or per status sync.
  node_reflector_ = std::make_unique<client::Reflector>(
      api_, "/api/v1/nodes", "fieldSelector=metadata.name%3D" + o_.node_name, "nodes",
      [this](const client::Reflector::Store& nodes) {
        for (const auto& [uid, obj] : nodes) {
          auto decoded = api::DecodeNode(obj);
          if (!decoded.ok()) {
            log_->error("Node from the API server cannot be read node=\"{}\" err=\"{}\"", o_.node_name,
                        decoded.status().message());
            continue;
          }
          if (decoded->metadata.name != o_.node_name) continue;
          std::vector<std::string> attached;
          const json st = obj.value("status", json::object());
          if (st.is_object() && st.contains("volumesAttached") && st["volumesAttached"].is_array())
            for (const auto& v : st["volumesAttached"])
              if (v.is_object() && v.contains("name") && v["name"].is_string()) attached.push_back(v["name"].get<std::string>());
          std::lock_guard<std::mutex> l(mu_);
          labels_ = decoded->metadata.labels;
          volumes_attached_ = std::move(attached);
        }
      });
  node_reflector_->Start();
  status_thread_ = std::thread([this] { GuardedRun("node_status StatusLoop", [this] { StatusLoop(); }); });
  lease_thread_ = std::thread([this] { GuardedRun("node_status LeaseLoop", [this] { LeaseLoop(); }); });
}

void NodeStatusManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (node_reflector_) node_reflector_->Stop();
  if (status_thread_.joinable()) status_thread_.join();
  if (lease_thread_.joinable()) lease_thread_.join();
}

std::optional<std::map<std::string, std::string>> NodeStatusManager::NodeLabels() const {
  std::lock_guard<std::mutex> l(mu_);
  return labels_;
}

std::optional<std::map<std::string, std::string>> NodeStatusManager::RefreshNodeLabels() {
  auto got = api_->Get("/api/v1/nodes/" + o_.node_name);
  if (!got.ok()) {
    log_->warn("Failed to read the node from the API server node=\"{}\" err=\"{}\"", o_.node_name, got.status().message());
    return std::nullopt;
  }
  auto decoded = api::DecodeNode(*got);
  if (!decoded.ok() || decoded->metadata.name != o_.node_name) return std::nullopt;
  std::lock_guard<std::mutex> l(mu_);
  labels_ = decoded->metadata.labels;
  return labels_;
}

std::optional<std::vector<std::string>> NodeStatusManager::VolumesAttached() const {
  std::lock_guard<std::mutex> l(mu_);
  return volumes_attached_;
}

std::string NodeStatusManager::NodeUID() const {
  std::lock_guard<std::mutex> l(mu_);
  return node_uid_;
}

absl::Status NodeStatusManager::RegisterOnce() {
  api::Node node = InitialNode(o_);
  auto created = api_->Create("/api/v1/nodes", api::EncodeNode(node));
  json existing;
  if (created.ok()) {
    existing = *created;
    log_->info("Successfully registered node node=\"{}\"", o_.node_name);
    if (p_.node_event) p_.node_event("RegisteredNode", "Node " + o_.node_name + " event: Registered Node " + o_.node_name + " in Controller", "Normal");
  } else if (created.status().code() == absl::StatusCode::kAlreadyExists) {
    // Take the node over: make sure the labels this kubelet owns are there.
    auto got = api_->Get("/api/v1/nodes/" + o_.node_name);
    if (!got.ok()) return got.status();
    json patch = {{"metadata", {{"labels", node.metadata.labels}, {"annotations", node.metadata.annotations}}}};
    auto patched = api_->Patch("/api/v1/nodes/" + o_.node_name, patch, client::PatchType::kStrategicMerge);
    if (!patched.ok()) return patched.status();
    existing = *patched;
    log_->info("Node was previously registered node=\"{}\"", o_.node_name);
  } else {
    return created.status();
  }
  auto decoded = api::DecodeNode(existing);
  if (!decoded.ok()) return absl::InvalidArgumentError("node " + o_.node_name + " from the API server: " + std::string(decoded.status().message()));
  {
    std::lock_guard<std::mutex> l(mu_);
    node_uid_ = decoded->metadata.uid;
    last_status_ = decoded->status;
    labels_ = decoded->metadata.labels;
  }
  registered_ = true;
  return SyncStatusOnce(true);
}

absl::Status NodeStatusManager::SyncStatusOnce(bool force) {
  api::NodeStatus old;
  {
    std::lock_guard<std::mutex> l(mu_);
    old = last_status_;
  }
  TimePoint now = clock_->Now();
  api::NodeStatus status = ComputeNodeStatus(o_, p_, old, now);
  // Compare without heartbeat times: only a real change (or the report period) is patched.
  bool changed = !api::SameNodeStatusIgnoringHeartbeat(status, old);
  bool due = !last_report_ || now - *last_report_ >= o_.report_frequency;
  if (!force && !changed && !due) return absl::OkStatus();
  nlohmann::json patch_status = api::EncodeNodeStatus(status);
  if (status.volumes_in_use.empty() && !old.volumes_in_use.empty()) patch_status["volumesInUse"] = nullptr;  // removed
  auto r = api_->Patch("/api/v1/nodes/" + o_.node_name + "/status", {{"status", std::move(patch_status)}},
                       client::PatchType::kStrategicMerge);
  if (!r.ok()) return r.status();
  // An event for each condition that is new or changed status, as upstream's condition setters record them.
  static const std::map<std::string, std::pair<const char*, const char*>> kReasons = {
      {"Ready", {"NodeReady", "NodeNotReady"}},
      {"MemoryPressure", {"NodeHasInsufficientMemory", "NodeHasSufficientMemory"}},
      {"DiskPressure", {"NodeHasDiskPressure", "NodeHasNoDiskPressure"}},
      {"PIDPressure", {"NodeHasInsufficientPID", "NodeHasSufficientPID"}}};
  if (p_.node_event)
    for (const auto& c : status.conditions) {
      auto reasons = kReasons.find(c.type);
      if (reasons == kReasons.end()) continue;
      bool changed_status = true;
      for (const auto& o : old.conditions)
        if (o.type == c.type) changed_status = o.status != c.status;
      if (!changed_status) continue;
      std::string reason = c.status == "True" ? reasons->second.first : reasons->second.second;
      p_.node_event(reason, "Node " + o_.node_name + " status is now: " + reason, "Normal");
    }
  {
    std::lock_guard<std::mutex> l(mu_);
    last_status_ = status;
    last_report_ = now;
  }
  // The pressure taints (node.kubernetes.io/*-pressure) are the node lifecycle controller's, from these
  // conditions (TaintNodesByCondition): NodeRestriction forbids a node to modify its own taints.
  return absl::OkStatus();
}

absl::Status NodeStatusManager::RenewLeaseOnce() {
  std::string path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + o_.node_name;
  auto got = api_->Get(path);
  TimePoint now = clock_->Now();
  if (!got.ok()) {
    if (got.status().code() != absl::StatusCode::kNotFound) return got.status();
    api::Lease lease;
    lease.metadata.name = o_.node_name;
    lease.metadata.namespace_ = "kube-node-lease";
    lease.spec.holder_identity = o_.node_name;
    lease.spec.lease_duration_seconds = o_.lease_duration_seconds;
    lease.spec.renew_time = now;
    std::string uid = NodeUID();
    if (!uid.empty()) lease.metadata.owner_references.push_back({"v1", "Node", o_.node_name, uid, std::nullopt, std::nullopt});
    return api_->Create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", api::EncodeLease(lease)).status();
  }
  auto lease = api::DecodeLease(*got);
  if (!lease.ok()) return absl::InvalidArgumentError("lease " + o_.node_name + ": " + std::string(lease.status().message()));
  lease->spec.holder_identity = o_.node_name;
  lease->spec.lease_duration_seconds = o_.lease_duration_seconds;
  lease->spec.renew_time = now;
  // PUT with the resourceVersion we read: a conflict means someone else wrote; the next round re-reads.
  return api_->Update(path, api::EncodeLease(*lease)).status();
}

void NodeStatusManager::StatusLoop() {
  Duration wait = std::chrono::milliseconds(500);
  while (true) {
    absl::Status st = registered_ ? SyncStatusOnce(false) : (o_.register_node ? RegisterOnce() : SyncStatusOnce(true));
    Duration next = o_.update_frequency;
    if (!st.ok()) {
      log_->error("{} node=\"{}\" err=\"{}\"", registered_ ? "Error updating node status, will retry" : "Unable to register node with API server",
                  o_.node_name, st.message());
      next = wait;
      wait = std::min<Duration>(wait * 2, std::chrono::seconds(7));
    } else {
      wait = std::chrono::milliseconds(500);
    }
    std::unique_lock<std::mutex> l(mu_);
    if (cv_.wait_for(l, next, [&] { return stop_; })) return;
  }
}

void NodeStatusManager::LeaseLoop() {
  Duration period = std::chrono::milliseconds(o_.lease_duration_seconds * 1000 / 4);
  Duration wait = std::chrono::milliseconds(200);
  while (true) {
    Duration next = period;
    if (registered_ || !o_.register_node) {
      auto st = RenewLeaseOnce();
      if (!st.ok()) {
        log_->error("Failed to update lease, will retry node=\"{}\" err=\"{}\"", o_.node_name, st.message());
        next = std::min(wait, period);
        wait = std::min<Duration>(wait * 2, period);
      } else {
        wait = std::chrono::milliseconds(200);
      }
    } else {
      next = std::chrono::milliseconds(200);
    }
    std::unique_lock<std::mutex> l(mu_);
    if (cv_.wait_for(l, next, [&] { return stop_; })) return;
  }
}

}  // namespace kubelet::nodestatus
