#include "kubelet/nodestatus/node_status.h"

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

std::string MicroTime(TimePoint t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() % 1000000;
  std::string base = FormatRFC3339(t);
  char frac[16];
  std::snprintf(frac, sizeof(frac), ".%06lld", static_cast<long long>(us));
  return base.substr(0, base.size() - 1) + frac + "Z";
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

json Condition(const std::string& type, bool status, const std::string& reason, const std::string& message,
               const json& old, TimePoint now) {
  std::string s = status ? "True" : "False";
  std::string transition = FormatRFC3339(now);
  if (old.is_object() && old.contains("conditions") && old["conditions"].is_array())
    for (const auto& c : old["conditions"])
      if (c.value("type", "") == type && c.value("status", "") == s) transition = c.value("lastTransitionTime", transition);
  return {{"type", type}, {"status", s}, {"reason", reason}, {"message", message},
          {"lastHeartbeatTime", FormatRFC3339(now)}, {"lastTransitionTime", transition}};
}

}  // namespace

std::pair<int64_t, int64_t> AllocatableCpuMemory(const NodeOptions& o) {
  int64_t cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int64_t mem = MachineMemoryBytes();
  int64_t cpu_alloc = cpus * 1000 - Reserved(o.system_reserved, "cpu", true) - Reserved(o.kube_reserved, "cpu", true);
  int64_t mem_alloc = mem - Reserved(o.system_reserved, "memory", false) - Reserved(o.kube_reserved, "memory", false) -
                      Threshold(o.eviction_hard, "memory.available", mem);
  return {cpu_alloc, mem_alloc};
}

json InitialNode(const NodeOptions& o) {
  json labels = {{"kubernetes.io/hostname", o.hostname.empty() ? o.node_name : o.hostname},
                 {"kubernetes.io/os", "linux"},
                 {"kubernetes.io/arch", "amd64"},
                 {"beta.kubernetes.io/os", "linux"},
                 {"beta.kubernetes.io/arch", "amd64"}};
  for (const auto& [k, v] : o.node_labels) labels[k] = v;
  json node = {{"apiVersion", "v1"},
               {"kind", "Node"},
               {"metadata",
                {{"name", o.node_name},
                 {"labels", labels},
                 {"annotations", {{"volumes.kubernetes.io/controller-managed-attach-detach", "true"}}}}},
               {"spec", json::object()}};
  if (o.register_with_taints.is_array() && !o.register_with_taints.empty()) node["spec"]["taints"] = o.register_with_taints;
  if (!o.provider_id.empty()) node["spec"]["providerID"] = o.provider_id;
  if (!o.pod_cidr.empty()) node["spec"]["podCIDR"] = o.pod_cidr;
  return node;
}

json ComputeNodeStatus(const NodeOptions& o, const NodeProviders& p, const json& old, TimePoint now) {
  int64_t cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int64_t mem = MachineMemoryBytes();
  struct statvfs vfs {};
  int64_t disk = ::statvfs(o.root_dir.c_str(), &vfs) == 0 ? static_cast<int64_t>(vfs.f_blocks) * vfs.f_frsize : 0;
  json capacity = {{"cpu", std::to_string(cpus)}, {"memory", Ki(mem)}, {"ephemeral-storage", Ki(disk)},
                   {"pods", std::to_string(o.max_pods)}, {"hugepages-1Gi", "0"}, {"hugepages-2Mi", "0"}};
  auto [cpu_alloc, mem_alloc] = AllocatableCpuMemory(o);
  int64_t disk_alloc = disk - Reserved(o.system_reserved, "ephemeral-storage", false) -
                       Reserved(o.kube_reserved, "ephemeral-storage", false) -
                       Threshold(o.eviction_hard, "nodefs.available", disk);
  json allocatable = capacity;
  allocatable["cpu"] = cpu_alloc % 1000 == 0 ? std::to_string(cpu_alloc / 1000) : std::to_string(cpu_alloc) + "m";
  allocatable["memory"] = Ki(mem_alloc);
  allocatable["ephemeral-storage"] = std::to_string(std::max<int64_t>(0, disk_alloc));

  Readiness r = p.readiness ? p.readiness() : Readiness{};
  bool ready = r.runtime_ready && r.network_ready;
  json conditions = json::array();
  conditions.push_back(Condition("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", old, now));
  conditions.push_back(Condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", old, now));
  conditions.push_back(Condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available", old, now));
  conditions.push_back(Condition("Ready", ready, ready ? "KubeletReady" : "KubeletNotReady",
                                 ready ? "kubelet is posting ready status" : r.message, old, now));
  json addresses = json::array();
  if (!o.node_ip.empty()) addresses.push_back({{"type", "InternalIP"}, {"address", o.node_ip}});
  addresses.push_back({{"type", "Hostname"}, {"address", o.hostname.empty() ? o.node_name : o.hostname}});
  utsname u{};
  ::uname(&u);
  json info = {{"machineID", ReadTrim("/etc/machine-id")},
               {"systemUUID", ReadTrim("/sys/class/dmi/id/product_uuid")},
               {"bootID", ReadTrim("/proc/sys/kernel/random/boot_id")},
               {"kernelVersion", u.release},
               {"osImage", OsImage()},
               {"containerRuntimeVersion", p.runtime_version ? p.runtime_version() : ""},
               {"kubeletVersion", kKubeletVersion},
               {"kubeProxyVersion", ""},
               {"operatingSystem", "linux"},
               {"architecture", "amd64"}};
  return {{"capacity", capacity},   {"allocatable", allocatable}, {"conditions", conditions}, {"addresses", addresses},
          {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", o.kubelet_port}}}}}, {"nodeInfo", info}};
}

NodeStatusManager::NodeStatusManager(client::ApiClient* api, const Clock* clock, NodeOptions o, NodeProviders p)
    : api_(api), clock_(clock), o_(std::move(o)), p_(std::move(p)), log_(log::Get("nodestatus")) {}

NodeStatusManager::~NodeStatusManager() { Stop(); }

void NodeStatusManager::Start() {
  status_thread_ = std::thread([this] { StatusLoop(); });
  lease_thread_ = std::thread([this] { LeaseLoop(); });
}

void NodeStatusManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (status_thread_.joinable()) status_thread_.join();
  if (lease_thread_.joinable()) lease_thread_.join();
}

std::string NodeStatusManager::NodeUID() const {
  std::lock_guard<std::mutex> l(mu_);
  return node_uid_;
}

absl::Status NodeStatusManager::RegisterOnce() {
  json node = InitialNode(o_);
  auto created = api_->Create("/api/v1/nodes", node);
  json existing;
  if (created.ok()) {
    existing = *created;
    log_->info("Successfully registered node node=\"{}\"", o_.node_name);
    if (p_.node_event) p_.node_event("RegisteredNode", "Node " + o_.node_name + " event: Registered Node " + o_.node_name + " in Controller", "Normal");
  } else if (created.status().code() == absl::StatusCode::kAlreadyExists) {
    // Take the node over: make sure the labels this kubelet owns are there.
    auto got = api_->Get("/api/v1/nodes/" + o_.node_name);
    if (!got.ok()) return got.status();
    json patch = {{"metadata", {{"labels", node["metadata"]["labels"]}, {"annotations", node["metadata"]["annotations"]}}}};
    auto patched = api_->Patch("/api/v1/nodes/" + o_.node_name, patch, client::PatchType::kStrategicMerge);
    if (!patched.ok()) return patched.status();
    existing = *patched;
    log_->info("Node was previously registered node=\"{}\"", o_.node_name);
  } else {
    return created.status();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    node_uid_ = existing["metadata"].value("uid", "");
    if (existing.contains("status")) last_status_ = existing["status"];
  }
  registered_ = true;
  return SyncStatusOnce(true);
}

absl::Status NodeStatusManager::SyncStatusOnce(bool force) {
  json old;
  {
    std::lock_guard<std::mutex> l(mu_);
    old = last_status_;
  }
  TimePoint now = clock_->Now();
  json status = ComputeNodeStatus(o_, p_, old, now);
  // Compare without heartbeat times: only a real change (or the report period) is patched.
  auto strip = [](json s) {
    if (s.is_object() && s.contains("conditions"))
      for (auto& c : s["conditions"]) c.erase("lastHeartbeatTime");
    return s;
  };
  bool changed = strip(status) != strip(old);
  bool due = !last_report_ || now - *last_report_ >= o_.report_frequency;
  if (!force && !changed && !due) return absl::OkStatus();
  auto r = api_->Patch("/api/v1/nodes/" + o_.node_name + "/status", {{"status", status}}, client::PatchType::kStrategicMerge);
  if (!r.ok()) return r.status();
  bool ready = false;
  for (const auto& c : status["conditions"])
    if (c["type"] == "Ready") ready = c["status"] == "True";
  if ((!last_ready_ || *last_ready_ != ready) && p_.node_event)
    p_.node_event(ready ? "NodeReady" : "NodeNotReady",
                  "Node " + o_.node_name + " status is now: " + (ready ? "NodeReady" : "NodeNotReady"), "Normal");
  std::lock_guard<std::mutex> l(mu_);
  last_ready_ = ready;
  last_status_ = status;
  last_report_ = now;
  return absl::OkStatus();
}

absl::Status NodeStatusManager::RenewLeaseOnce() {
  std::string path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + o_.node_name;
  auto got = api_->Get(path);
  std::string now = MicroTime(clock_->Now());
  if (!got.ok()) {
    if (got.status().code() != absl::StatusCode::kNotFound) return got.status();
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", o_.node_name}, {"namespace", "kube-node-lease"}}},
                  {"spec", {{"holderIdentity", o_.node_name}, {"leaseDurationSeconds", o_.lease_duration_seconds}, {"renewTime", now}}}};
    std::string uid = NodeUID();
    if (!uid.empty())
      lease["metadata"]["ownerReferences"] = {{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", o_.node_name}, {"uid", uid}}};
    return api_->Create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease).status();
  }
  json lease = *got;
  lease["spec"]["holderIdentity"] = o_.node_name;
  lease["spec"]["leaseDurationSeconds"] = o_.lease_duration_seconds;
  lease["spec"]["renewTime"] = now;
  // PUT with the resourceVersion we read: a conflict means someone else wrote; the next round re-reads.
  return api_->Update(path, lease).status();
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
