#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/json.h"
#include "kubelet/kuberuntime/logs.h"
#include "kubelet/kuberuntime/security_context.h"
#include "kubelet/network/cni.h"
#include "kubelet/api/quantity.h"
#include "kubelet/prober/prober.h"
#include "kubelet/volumemanager/subpath.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>
#include <set>
#include <sstream>

#include "kubelet/api/codec.h"
#include "kubelet/api/quantity.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/util/logging.h"

namespace kubelet::kuberuntime {
namespace {

namespace fs = std::filesystem;
using cri::rt::ContainerConfig;
using cri::rt::PodSandboxConfig;

// Upstream never gives a container less than 2s to stop.
constexpr int64_t kMinimumGracePeriodSeconds = 2;

ContainerState FromCRI(cri::rt::ContainerState s) {
  switch (s) {
    case cri::rt::CONTAINER_CREATED: return ContainerState::kCreated;
    case cri::rt::CONTAINER_RUNNING: return ContainerState::kRunning;
    case cri::rt::CONTAINER_EXITED: return ContainerState::kExited;
    default: return ContainerState::kUnknown;
  }
}

std::string Label(const google::protobuf::Map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? "" : it->second;
}

int32_t IntAnnotation(const google::protobuf::Map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  return static_cast<int32_t>(std::strtol(it->second.c_str(), nullptr, 10));
}

std::string PodDesc(const api::Pod& pod) { return pod.metadata.namespace_ + "/" + pod.metadata.name; }

// A counting semaphore bounding concurrent image pulls.
class PullLimiter {
 public:
  explicit PullLimiter(int n) : free_(n) {}
  // False when the pod's sync was cancelled (a kill arrived) while it waited for its turn.
  bool Acquire() {
    std::unique_lock<std::mutex> l(mu_);
    while (free_ <= 0) {
      if (CancelScope::Cancelled()) return false;
      cv_.wait_for(l, std::chrono::milliseconds(100));
    }
    --free_;
    return true;
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    ++free_;
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

struct ResolvConf {
  std::vector<std::string> servers, searches, options;
};

ResolvConf ReadResolvConf(const std::string& path) {
  ResolvConf rc;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    std::istringstream ss(line);
    std::string key, v;
    ss >> key;
    if (key == "nameserver") {
      if (ss >> v) rc.servers.push_back(v);
    } else if (key == "search") {
      rc.searches.clear();
      while (ss >> v) rc.searches.push_back(v);
    } else if (key == "options") {
      while (ss >> v) rc.options.push_back(v);
    }
  }
  return rc;
}

class RuntimeManagerImpl : public RuntimeManager {
 public:
  RuntimeManagerImpl(const RuntimeManagerDeps& d, const RuntimeManagerOptions& o)
      : d_(d),
        o_(o),
        log_(log::Get("kuberuntime")),
        image_backoff_(std::chrono::seconds(10), std::chrono::minutes(5), d.clock),
        pulls_(o.serialize_image_pulls ? 1 : (o.max_parallel_image_pulls > 0 ? o.max_parallel_image_pulls : 1 << 20)) {}

  absl::StatusOr<cri::rt::VersionResponse> Version() override {
    auto v = d_.runtime->Version();
    if (v.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      runtime_type_ = v->runtime_name();
    }
    return v;
  }

  std::string RuntimeType() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!runtime_type_.empty()) return runtime_type_;
    }
    auto v = Version();  // learns the runtime's name (the containerID prefix)
    return v.ok() ? v->runtime_name() : "containerd";
  }

  absl::StatusOr<std::vector<RuntimePod>> GetPods(bool all) override {
    auto sandboxes = d_.runtime->ListPodSandbox(nullptr);
    if (!sandboxes.ok()) return sandboxes.status();
    cri::rt::ContainerFilter filter;
    if (!all) filter.mutable_state()->set_state(cri::rt::CONTAINER_RUNNING);
    auto containers = d_.runtime->ListContainers(all ? nullptr : &filter);
    if (!containers.ok()) return containers.status();
    std::map<std::string, RuntimePod> pods;
    for (const auto& s : *sandboxes) {
      if (!all && s.state() != cri::rt::SANDBOX_READY) continue;
      const std::string& uid = s.metadata().uid();
      RuntimePod& p = pods[uid];
      p.uid = uid;
      p.name = s.metadata().name();
      p.namespace_ = s.metadata().namespace_();
      p.sandboxes.push_back({s.id(), s.state() == cri::rt::SANDBOX_READY, FromUnixNanos(s.created_at())});
    }
    for (const auto& c : *containers) {
      std::string uid = Label(c.labels(), kPodUIDLabel);
      if (uid.empty()) continue;  // not made by a kubelet
      RuntimePod& p = pods[uid];
      p.uid = uid;
      if (p.name.empty()) {
        p.name = Label(c.labels(), kPodNameLabel);
        p.namespace_ = Label(c.labels(), kPodNamespaceLabel);
      }
      p.containers.push_back({c.id(), c.metadata().name(), c.pod_sandbox_id(), FromCRI(c.state()),
                              FromUnixNanos(c.created_at())});
    }
    std::vector<RuntimePod> out;
    out.reserve(pods.size());
    for (auto& [_, p] : pods) out.push_back(std::move(p));
    return out;
  }

  absl::StatusOr<PodStatus> GetPodStatus(const std::string& uid, const std::string& name,
                                         const std::string& ns) override {
    PodStatus st;
    st.uid = uid;
    st.name = name;
    st.namespace_ = ns;
    st.timestamp = d_.clock->Now();
    cri::rt::PodSandboxFilter sf;
    (*sf.mutable_label_selector())[kPodUIDLabel] = uid;
    auto sandboxes = d_.runtime->ListPodSandbox(&sf);
    if (!sandboxes.ok()) return sandboxes.status();
    std::sort(sandboxes->begin(), sandboxes->end(),
              [](const auto& a, const auto& b) { return a.created_at() > b.created_at(); });
    for (size_t i = 0; i < sandboxes->size(); ++i) {
      const auto& s = (*sandboxes)[i];
      SandboxStatus ss;
      ss.id = s.id();
      ss.ready = s.state() == cri::rt::SANDBOX_READY;
      ss.created_at = FromUnixNanos(s.created_at());
      ss.attempt = s.metadata().attempt();
      auto full = d_.runtime->PodSandboxStatus(s.id());
      if (!full.ok()) {
        if (full.status().code() == absl::StatusCode::kNotFound) continue;  // removed meanwhile
        return full.status();
      }
      const auto& fs = full->status();
      ss.host_network = fs.linux().namespaces().options().network() == cri::rt::NODE;
      ss.ip = fs.network().ip();
      for (const auto& ip : fs.network().additional_ips()) ss.additional_ips.push_back(ip.ip());
      if (d_.cni && !ss.host_network) {
        // Kubelet network mode: the IPs are what the kubelet's CNI plugins gave, from the result cache.
        if (auto cached = d_.cni->CachedAny(s.id()); cached && !cached->ips.empty()) {
          ss.ip = cached->ips.front();
          ss.additional_ips.assign(cached->ips.begin() + 1, cached->ips.end());
        }
      }
      if (i == 0 && ss.ready && !ss.ip.empty()) {
        st.ips.push_back(ss.ip);
        for (const auto& ip : ss.additional_ips) st.ips.push_back(ip);
      }
      st.sandboxes.push_back(std::move(ss));
    }
    cri::rt::ContainerFilter cf;
    (*cf.mutable_label_selector())[kPodUIDLabel] = uid;
    auto containers = d_.runtime->ListContainers(&cf);
    if (!containers.ok()) return containers.status();
    for (const auto& c : *containers) {
      auto cs = d_.runtime->ContainerStatus(c.id());
      if (!cs.ok()) {
        if (cs.status().code() == absl::StatusCode::kNotFound) continue;
        return cs.status();
      }
      ContainerStatus out;
      out.id = cs->id();
      out.name = cs->metadata().name();
      out.state = FromCRI(cs->state());
      out.created_at = FromUnixNanos(cs->created_at());
      out.started_at = FromUnixNanos(cs->started_at());
      out.finished_at = FromUnixNanos(cs->finished_at());
      out.exit_code = cs->exit_code();
      out.image = cs->image().image();
      out.image_ref = cs->image_ref();
      out.reason = cs->reason();
      out.message = cs->message();
      out.hash = Label(cs->annotations(), kContainerHashAnnotation);
      out.restart_count = IntAnnotation(cs->annotations(), kContainerRestartCountAnnotation);
      out.termination_message_path = Label(cs->annotations(), kContainerTerminationMessagePathAnnotation);
      if (out.state == ContainerState::kExited) {
        // The termination message: the file the container wrote at terminationMessagePath (at most 4 KiB),
        // or with FallbackToLogsOnError and an error exit, the end of its log.
        std::string msg;
        for (const auto& m : cs->mounts())
          if (!out.termination_message_path.empty() && m.container_path() == out.termination_message_path) {
            std::ifstream f(m.host_path(), std::ios::binary);
            char buf[4096];
            f.read(buf, sizeof(buf));
            msg.assign(buf, static_cast<size_t>(f.gcount()));
          }
        std::string policy = Label(cs->annotations(), kContainerTerminationMessagePolicyAnnotation);
        if (msg.empty() && policy == "FallbackToLogsOnError" && out.exit_code != 0 && !cs->log_path().empty())
          msg = TailLogText(cs->log_path());
        if (!msg.empty()) out.message = out.message.empty() ? msg : out.message + msg;
      }
      st.containers.push_back(std::move(out));
    }
    std::sort(st.containers.begin(), st.containers.end(),
              [](const auto& a, const auto& b) { return a.created_at > b.created_at; });
    return st;
  }

  absl::StatusOr<std::pair<std::string, bool>> ContainerLog(const std::string& container_id) override {
    auto cs = d_.runtime->ContainerStatus(container_id);
    if (!cs.ok()) return cs.status();
    return std::make_pair(cs->log_path(), cs->state() == cri::rt::CONTAINER_RUNNING);
  }

  absl::StatusOr<cri::rt::ExecSyncResponse> ExecSync(const std::string& container_id, const std::vector<std::string>& cmd,
                                                     Duration timeout, Duration call_deadline) override {
    return d_.runtime->ExecSync(container_id, cmd, timeout, call_deadline);
  }

  SyncResult SyncPod(const api::Pod& pod, const PodStatus& status, Backoff* backoff, const ProbeLookup& probes) override {
    SyncResult result;
    PodActions a = ComputePodActions(pod, status, probes);
    KLOG_V(log_, 3)("computePodActions pod=\"{}\" killPod={} createSandbox={} initStart={} start={} kill={}", PodDesc(pod),
                    a.kill_pod, a.create_sandbox, a.init_containers_to_start.size(), a.containers_to_start.size(),
                    a.containers_to_kill.size());
    if (a.create_sandbox && !a.sandbox_id.empty())
      d_.recorder->PodEvent(pod, events::kNormal, events::kSandboxChanged,
                            "Pod sandbox changed, it will be killed and re-created.");
    if (a.kill_pod) {
      RuntimePod running = ToRuntimePod(status);
      if (!running.containers.empty() || !running.sandboxes.empty()) {
        if (auto st = KillPod(&pod, running, std::nullopt); !st.ok()) {
          result.error = st;
          return result;
        }
      }
      if (!a.create_sandbox) return result;
    } else {
      for (const auto& [id, k] : a.containers_to_kill) {
        KLOG_V(log_, 2)("Killing container pod=\"{}\" container=\"{}\" containerID=\"{}\" reason=\"{}\"", PodDesc(pod), k.name, id, k.message);
        std::optional<int64_t> grace;
        if (const api::Container* spec = FindSpec(pod, k.name)) {
          // A failed probe may carry its own grace period.
          const auto& probe = k.reason == "LivenessProbe" ? spec->liveness_probe : k.reason == "StartupProbe" ? spec->startup_probe : std::nullopt;
          if (probe && probe->termination_grace_period_seconds) grace = *probe->termination_grace_period_seconds;
        }
        if (auto st = KillContainer(&pod, id, k.name, GracePeriod(pod, grace), k.message, status.ips); !st.ok()) {
          result.error = st;
          return result;
        }
      }
    }

    std::string sandbox_id = a.sandbox_id;
    if (!a.create_sandbox && a.containers_to_start.empty() && a.init_containers_to_start.empty()) {
      if (!a.sandbox_id.empty()) RefreshVolumes(pod);
      return result;
    }
    // The pod's volumes before its sandbox, as upstream's SyncPod: this waits on this pod's worker only.
    auto volumes = d_.volumes->WaitForAttachAndMount(pod);
    if (!volumes.ok()) {
      if (volumes.status().code() != absl::StatusCode::kCancelled) {
        std::string msg = "Unable to attach or mount volumes: " + std::string(volumes.status().message());
        d_.recorder->PodEvent(pod, events::kWarning, events::kFailedMount, msg);
        log_->error("Unable to attach or mount volumes for pod; skipping pod pod=\"{}\" err=\"{}\"", PodDesc(pod),
                    volumes.status().message());
        result.error = absl::Status(volumes.status().code(), msg);
      } else {
        result.error = volumes.status();
      }
      return result;
    }
    PodSandboxConfig sandbox_config = BuildSandboxConfig(pod, a.attempt, a.create_sandbox);
    std::vector<std::string> pod_ips = status.ips;
    if (a.create_sandbox) {
      std::error_code ec;
      fs::create_directories(sandbox_config.log_directory(), ec);
      if (ec) {
        result.error = absl::InternalError("create pod log directory " + sandbox_config.log_directory() + ": " + ec.message());
        return result;
      }
      // Upstream's FailedCreatePodSandBox: the event, the log line, and the sync's error.
      auto sandbox_failed = [&](const absl::Status& st) {
        std::string msg = "Failed to create pod sandbox: " + std::string(st.message());
        d_.recorder->PodEvent(pod, events::kWarning, events::kFailedCreatePodSandBox, msg);
        log_->error("CreatePodSandbox for pod failed pod=\"{}\" err=\"{}\"", PodDesc(pod), st.message());
        result.error = absl::Status(st.code(), msg);
        return result;
      };
      std::string handler;
      if (d_.runtime_classes) {
        auto h = d_.runtime_classes->LookupRuntimeHandler(pod.spec.runtime_class_name);
        if (!h.ok()) return sandbox_failed(h.status());
        handler = *h;
        if (!handler.empty()) KLOG_V(log_, 2)("Running pod with runtime handler pod=\"{}\" runtimeHandler=\"{}\"", PodDesc(pod), handler);
      }
      auto id = d_.runtime->RunPodSandbox(sandbox_config, handler);
      if (d_.metrics) d_.metrics->started_pods.Increment();
      if (!id.ok()) {
        if (d_.metrics) d_.metrics->started_pods_errors.Increment();
        return sandbox_failed(id.status());
      }
      sandbox_id = *id;
      auto ss = d_.runtime->PodSandboxStatus(sandbox_id);
      if (!ss.ok()) {
        result.error = ss.status();
        return result;
      }
      pod_ips.clear();
      if (!pod.spec.host_network && d_.cni) {
        // Kubelet network mode: attach the pod network into the sandbox's namespace with the CNI plugins.
        auto ips = AttachNetwork(pod, sandbox_id, ss->status().network().ip().empty() ? "eth0" : "eth1");
        if (!ips.ok()) {
          auto failed = sandbox_failed(ips.status());
          (void)d_.runtime->StopPodSandbox(sandbox_id);
          return failed;
        }
        pod_ips = *ips;
      } else if (!pod.spec.host_network && !ss->status().network().ip().empty()) {
        pod_ips.push_back(ss->status().network().ip());
        for (const auto& ip : ss->status().network().additional_ips()) pod_ips.push_back(ip.ip());
      }
      KLOG_V(log_, 2)("Created PodSandbox for pod podSandboxID=\"{}\" pod=\"{}\" ips={}", sandbox_id, PodDesc(pod),
                      pod_ips.empty() ? "" : pod_ips[0]);
    }
    if (sandbox_id.empty() || (a.containers_to_start.empty() && a.init_containers_to_start.empty())) return result;

    std::string hosts_file = WriteHostsFile(pod, pod_ips);

    // Init containers in order: a sidecar that fails to start is skipped, a plain one stops the round.
    for (size_t idx : a.init_containers_to_start) {
      const api::Container& c = pod.spec.init_containers[idx];
      absl::Status st = StartContainer(pod, c, status, sandbox_id, sandbox_config, *volumes, hosts_file, pod_ips, backoff);
      if (st.ok()) {
        result.started_any = true;
        continue;
      }
      if (result.error.ok()) result.error = st;
      if (!api::IsRestartableInitContainer(c)) return result;
    }
    for (size_t idx : a.containers_to_start) {
      const api::Container& c = pod.spec.containers[idx];
      absl::Status st = StartContainer(pod, c, status, sandbox_id, sandbox_config, *volumes, hosts_file, pod_ips, backoff);
      if (st.ok()) {
        result.started_any = true;
      } else if (result.error.ok()) {
        result.error = st;
      }
    }
    return result;
  }

  absl::Status KillPod(const api::Pod* pod, const RuntimePod& running, std::optional<int64_t> grace_override) override {
    int64_t grace = pod ? GracePeriod(*pod, grace_override) : std::max<int64_t>(grace_override.value_or(30), kMinimumGracePeriodSeconds);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace);
    // Sidecars (restartable init containers) stop after the others, last one first, as upstream orders them.
    std::vector<const RuntimeContainer*> regular;
    std::vector<std::pair<size_t, const RuntimeContainer*>> sidecars;
    for (const auto& c : running.containers) {
      if (c.state != ContainerState::kRunning && c.state != ContainerState::kCreated && c.state != ContainerState::kUnknown) continue;
      std::optional<size_t> sidecar_index;
      if (pod)
        for (size_t i = 0; i < pod->spec.init_containers.size(); ++i)
          if (pod->spec.init_containers[i].name == c.name && api::IsRestartableInitContainer(pod->spec.init_containers[i]))
            sidecar_index = i;
      if (sidecar_index) {
        sidecars.emplace_back(*sidecar_index, &c);
      } else {
        regular.push_back(&c);
      }
    }
    std::sort(sidecars.begin(), sidecars.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    // preStop httpGet hooks dial the pod IP: read it once from the ready sandbox.
    std::vector<std::string> pod_ips;
    bool http_hook = false;
    if (pod)
      for (const auto* list : {&pod->spec.containers, &pod->spec.init_containers})
        for (const auto& c : *list) http_hook |= c.lifecycle && c.lifecycle->pre_stop && c.lifecycle->pre_stop->http_get;
    if (http_hook)
      for (const auto& sb : running.sandboxes)
        if (sb.ready)
          if (auto ss = d_.runtime->PodSandboxStatus(sb.id); ss.ok() && !ss->status().network().ip().empty())
            pod_ips = {ss->status().network().ip()};
    auto stop = [&](const RuntimeContainer& c, int64_t g) {
      KLOG_V(log_, 2)("Killing container with a grace period pod=\"{}/{}\" containerName=\"{}\" containerID=\"{}\" gracePeriod={}",
                      running.namespace_, running.name, c.name, c.id, g);
      return KillContainer(pod, c.id, c.name, g, "", pod_ips, c.state == ContainerState::kRunning);
    };
    // Regular containers stop in parallel, as upstream: each may take its whole grace period.
    std::vector<std::future<absl::Status>> stops;
    for (const auto* c : regular)
      stops.push_back(std::async(std::launch::async, [&stop, c, grace] { return stop(*c, grace); }));
    absl::Status first;
    for (auto& f : stops) {
      absl::Status st = f.get();
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound && first.ok()) first = st;
    }
    for (const auto& [_, c] : sidecars) {
      auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now()).count();
      absl::Status st = stop(*c, std::max<int64_t>(left, kMinimumGracePeriodSeconds));
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound && first.ok()) first = st;
    }
    if (!first.ok()) return first;
    for (const auto& s : running.sandboxes) {
      // Kubelet network mode: the network goes (DEL) while the namespace still exists, then the sandbox.
      if (auto st = DetachNetwork(running, s.id); !st.ok()) return st;
      absl::Status st = d_.runtime->StopPodSandbox(s.id);
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound) return st;
    }
    return absl::OkStatus();
  }

  absl::Status RemovePod(const RuntimePod& pod) override {
    for (const auto& c : pod.containers) {
      absl::Status st = d_.runtime->RemoveContainer(c.id);
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound) return st;
      UnlinkContainerLog(pod.name, pod.namespace_, c.name, c.id);
    }
    for (const auto& s : pod.sandboxes) {
      if (auto st = DetachNetwork(pod, s.id); !st.ok()) return st;
      absl::Status st = d_.runtime->RemovePodSandbox(s.id);
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound) return st;
    }
    if (!pod.uid.empty() && !pod.name.empty()) {
      std::error_code ec;
      fs::remove_all(o_.pod_logs_dir + "/" + pod.namespace_ + "_" + pod.name + "_" + pod.uid, ec);
    }
    ForgetPod(pod.uid);
    return absl::OkStatus();
  }

  absl::Status GarbageCollect(const std::vector<RuntimePod>& pods, const std::map<std::string, bool>& active_uids) override {
    for (const auto& p : pods) {
      if (!active_uids.count(p.uid)) continue;  // pods not wanted are removed whole by their worker
      // Keep the newest dead instance of each container name (MaxPerPodContainer=1).
      std::map<std::string, std::vector<const RuntimeContainer*>> dead;
      for (const auto& c : p.containers)
        if (c.state == ContainerState::kExited) dead[c.name].push_back(&c);
      for (auto& [name, list] : dead) {
        std::sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->created_at > b->created_at; });
        for (size_t i = 1; i < list.size(); ++i) {
          KLOG_V(log_, 4)("Removing dead container pod=\"{}/{}\" container=\"{}\" containerID=\"{}\"", p.namespace_, p.name, name, list[i]->id);
          absl::Status st = d_.runtime->RemoveContainer(list[i]->id);
          if (!st.ok() && st.code() != absl::StatusCode::kNotFound) return st;
          UnlinkContainerLog(p.name, p.namespace_, name, list[i]->id);
        }
      }
      // Old, not-ready sandboxes with no containers left go too.
      std::vector<const RuntimeSandbox*> sbs;
      for (const auto& s : p.sandboxes) sbs.push_back(&s);
      std::sort(sbs.begin(), sbs.end(), [](auto* a, auto* b) { return a->created_at > b->created_at; });
      for (size_t i = 1; i < sbs.size(); ++i) {
        if (sbs[i]->ready) continue;
        bool used = false;
        for (const auto& c : p.containers)
          if (c.sandbox_id == sbs[i]->id) used = true;
        if (used) continue;
        absl::Status st = d_.runtime->RemovePodSandbox(sbs[i]->id);
        if (!st.ok() && st.code() != absl::StatusCode::kNotFound) return st;
      }
    }
    // Links whose log file is gone (the container was removed while the kubelet was down) go too.
    std::error_code ec;
    for (fs::directory_iterator it(ContainersLogDir(), ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code e2;
      if (it->is_symlink(e2) && !fs::exists(it->path(), e2)) fs::remove(it->path(), e2);
    }
    image_backoff_.GC();
    return absl::OkStatus();
  }

  std::optional<WaitingReason> GetWaitingReason(const std::string& uid, const std::string& container) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = reasons_.find(uid + "/" + container);
    if (it == reasons_.end()) return std::nullopt;
    return it->second;
  }

  void ForgetPod(const std::string& uid) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = reasons_.lower_bound(uid + "/");
    while (it != reasons_.end() && it->first.rfind(uid + "/", 0) == 0) it = reasons_.erase(it);
  }

 private:
  static const api::Container* FindSpec(const api::Pod& pod, const std::string& name) {
    for (const auto* list : {&pod.spec.containers, &pod.spec.init_containers})
      for (const auto& c : *list)
        if (c.name == name) return &c;
    return nullptr;
  }

  static RuntimePod ToRuntimePod(const PodStatus& s) {
    RuntimePod p;
    p.uid = s.uid;
    p.name = s.name;
    p.namespace_ = s.namespace_;
    for (const auto& sb : s.sandboxes) p.sandboxes.push_back({sb.id, sb.ready, sb.created_at});
    for (const auto& c : s.containers) p.containers.push_back({c.id, c.name, "", c.state, c.created_at});
    return p;
  }

  // The sandbox's network namespace path, from the runtime's verbose status (containerd's runtimeSpec).
  std::string NetNSPath(const std::string& sandbox_id) {
    auto vs = d_.runtime->PodSandboxStatus(sandbox_id, true);
    if (!vs.ok()) return "";
    auto it = vs->info().find("info");
    if (it == vs->info().end()) return "";
    nlohmann::json info = nlohmann::json::parse(it->second, nullptr, false);
    if (info.is_discarded()) return "";
    const auto& spec = info.value("runtimeSpec", nlohmann::json::object());
    if (!spec.contains("linux") || !spec["linux"].contains("namespaces")) return "";
    for (const auto& ns : spec["linux"]["namespaces"])
      if (ns.value("type", "") == "network") return ns.value("path", "");
    return "";
  }

  network::Attachment MakeAttachment(const std::string& name, const std::string& ns, const std::string& uid,
                                     const std::string& sandbox_id, const std::string& netns) {
    network::Attachment a;
    a.container_id = sandbox_id;
    a.netns = netns;
    a.pod_name = name;
    a.pod_namespace = ns;
    a.pod_uid = uid;
    return a;
  }

  // if_name: eth0, or eth1 when the runtime already put an interface of its own there (containerd always does).
  absl::StatusOr<std::vector<std::string>> AttachNetwork(const api::Pod& pod, const std::string& sandbox_id,
                                                         const std::string& if_name) {
    std::string netns = NetNSPath(sandbox_id);
    std::string who = pod.metadata.name + "_" + pod.metadata.namespace_;
    if (netns.empty())
      return absl::FailedPreconditionError("failed to set up sandbox container \"" + sandbox_id + "\" network for pod \"" +
                                           pod.metadata.name + "\": the runtime reports no network namespace for it");
    network::Attachment a = MakeAttachment(pod.metadata.name, pod.metadata.namespace_, pod.metadata.uid, sandbox_id, netns);
    a.if_name = if_name;
    for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
      for (const auto& c : *list)
        for (const auto& p : c.ports) {
          if (p.host_port <= 0) continue;
          std::string proto = p.protocol;
          for (auto& ch : proto) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          a.port_mappings.push_back({p.host_port, p.container_port, proto, p.host_ip});
        }
    // Traffic shaping from the upstream annotations, for a bandwidth plugin that asks for it.
    nlohmann::json bw = nlohmann::json::object();
    for (const auto& [ann, key] : std::vector<std::pair<std::string, std::string>>{{"kubernetes.io/ingress-bandwidth", "ingress"},
                                                                                    {"kubernetes.io/egress-bandwidth", "egress"}}) {
      auto it = pod.metadata.annotations.find(ann);
      if (it == pod.metadata.annotations.end()) continue;
      auto q = api::ParseQuantity(it->second);
      if (!q.ok()) return absl::InvalidArgumentError("invalid " + ann + " annotation \"" + it->second + "\"");
      bw[key + "Rate"] = q->Value();
      bw[key + "Burst"] = 2147483647;
    }
    if (!bw.empty()) a.bandwidth = bw;
    auto r = d_.cni->Add(a);
    if (!r.ok())
      return absl::Status(r.status().code(), "failed to set up sandbox container \"" + sandbox_id + "\" network for pod \"" +
                                                 pod.metadata.name + "\": networkPlugin cni failed to set up pod \"" + who +
                                                 "\" network: " + std::string(r.status().message()));
    KLOG_V(log_, 2)("Attached pod network pod=\"{}\" podSandboxID=\"{}\" netns=\"{}\" ips={}", PodDesc(pod), sandbox_id, netns,
                    r->ips.empty() ? "" : r->ips.front());
    return r->ips;
  }

  // DEL for a sandbox the kubelet attached (its result is cached); nothing in runtime network mode.
  absl::Status DetachNetwork(const RuntimePod& pod, const std::string& sandbox_id) {
    if (!d_.cni) return absl::OkStatus();
    auto cached = d_.cni->CachedAny(sandbox_id);
    if (!cached) return absl::OkStatus();
    network::Attachment a = MakeAttachment(pod.name, pod.namespace_, pod.uid, sandbox_id, NetNSPath(sandbox_id));
    a.if_name = cached->if_name;
    absl::Status st = d_.cni->Del(a);
    if (!st.ok()) {
      log_->error("Failed to tear down pod network pod=\"{}/{}\" podSandboxID=\"{}\" err=\"{}\"", pod.namespace_, pod.name,
                  sandbox_id, st.message());
      return absl::Status(st.code(), "networkPlugin cni failed to teardown pod \"" + pod.name + "_" + pod.namespace_ +
                                         "\" network: " + std::string(st.message()));
    }
    return absl::OkStatus();
  }

  SecurityOptions Security() const { return {o_.seccomp_default, o_.allow_privileged}; }

  std::string ContainersLogDir() const {
    if (!o_.container_logs_dir.empty()) return o_.container_logs_dir;
    return fs::path(o_.pod_logs_dir).parent_path().string() + "/containers";
  }

  // /var/log/containers/<pod>_<ns>_<container>-<id>.log -> the CRI log file, for log shippers.
  void LinkContainerLog(const std::string& pod, const std::string& ns, const std::string& container, const std::string& id,
                        const std::string& target) {
    std::error_code ec;
    fs::create_directories(ContainersLogDir(), ec);
    fs::path link = fs::path(ContainersLogDir()) / ContainerLogLinkName(pod, ns, container, id);
    fs::remove(link, ec);
    fs::create_symlink(target, link, ec);
    if (ec) log_->error("Failed to create container log symlink path=\"{}\" err=\"{}\"", link.string(), ec.message());
  }

  void UnlinkContainerLog(const std::string& pod, const std::string& ns, const std::string& container, const std::string& id) {
    std::error_code ec;
    fs::remove(fs::path(ContainersLogDir()) / ContainerLogLinkName(pod, ns, container, id), ec);
  }

  // Runs a lifecycle hook handler (exec, httpGet, sleep) for container `id`. `msg` gets upstream's failure message.
  absl::Status RunHook(const api::Pod& pod, const api::Container& c, const std::string& id, const api::ProbeHandler& h,
                       const std::vector<std::string>& pod_ips, Duration timeout, std::string* msg) {
    // format.Pod: name_namespace(uid)
    const std::string who = pod.metadata.name + "_" + pod.metadata.namespace_ + "(" + pod.metadata.uid + ")";
    if (h.exec_command) {
      auto r = d_.runtime->ExecSync(id, *h.exec_command, timeout);
      std::string cmd = "[";
      for (size_t i = 0; i < h.exec_command->size(); ++i) cmd += (i ? " " : "") + (*h.exec_command)[i];
      cmd += "]";
      if (!r.ok() || r->exit_code() != 0) {
        std::string err = !r.ok() ? std::string(r.status().message()) : "command '" + cmd.substr(1, cmd.size() - 2) +
                                                                            "' exited with " + std::to_string(r->exit_code()) + ": ";
        std::string output = r.ok() ? r->stdout() + r->stderr() : "";
        *msg = "Exec lifecycle hook (" + cmd + ") for Container \"" + c.name + "\" in Pod \"" + who +
               "\" failed - error: " + err + ", message: \"" + output + "\"";
        return absl::UnknownError(err);
      }
      return absl::OkStatus();
    }
    if (h.http_get) {
      auto port = prober::ResolvePort(h.http_get->port, c.ports);
      std::string host = !h.http_get->host.empty() ? h.http_get->host : pod_ips.empty() ? "" : pod_ips.front();
      std::string err;
      if (!port.ok()) {
        err = std::string(port.status().message());
      } else if (host.empty()) {
        err = "no pod IP to send the request to";
      } else {
        auto r = prober::Prober::RunHTTP(*h.http_get, host, *port, timeout);
        // Only a failed request fails an HTTP hook; any status code counts as delivered, as upstream.
        if (r.outcome == prober::Outcome::kFailure && r.output.rfind("HTTP probe failed with statuscode", 0) != 0) err = r.output;
      }
      if (!err.empty()) {
        *msg = "HTTP lifecycle hook (" + h.http_get->path + ") for Container \"" + c.name + "\" in Pod \"" + who +
               "\" failed - error: " + err;
        return absl::UnknownError(err);
      }
      return absl::OkStatus();
    }
    if (h.sleep_seconds) {
      auto until = std::chrono::steady_clock::now() + std::min<Duration>(std::chrono::seconds(*h.sleep_seconds), timeout);
      while (std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      return absl::OkStatus();
    }
    *msg = "invalid handler";
    return absl::InvalidArgumentError("invalid handler");
  }

  // Stops one container as upstream's killContainer: the Killing event, the preStop hook within the grace
  // period (what it used is taken off), then StopContainer with what is left (at least the minimum).
  absl::Status KillContainer(const api::Pod* pod, const std::string& id, const std::string& name, int64_t grace,
                             const std::string& message, const std::vector<std::string>& pod_ips, bool run_pre_stop = true) {
    const api::Container* spec = pod ? FindSpec(*pod, name) : nullptr;
    if (pod) d_.recorder->PodEvent(*pod, events::kNormal, events::kKilling, message.empty() ? "Stopping container " + name : message);
    if (run_pre_stop && spec && spec->lifecycle && spec->lifecycle->pre_stop && grace > 0) {
      auto start = std::chrono::steady_clock::now();
      std::string msg;
      absl::Status hook = RunHook(*pod, *spec, id, *spec->lifecycle->pre_stop, pod_ips, std::chrono::seconds(grace), &msg);
      if (!hook.ok()) {
        log_->error("PreStop hook failed pod=\"{}\" containerName=\"{}\" containerID=\"{}\" err=\"{}\"", PodDesc(*pod), name, id,
                    hook.message());
        d_.recorder->PodEvent(*pod, events::kWarning, "FailedPreStopHook", msg);
      }
      grace -= std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count();
    }
    absl::Status st = d_.runtime->StopContainer(id, std::max(grace, kMinimumGracePeriodSeconds));
    if (st.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return st;
  }

  int64_t GracePeriod(const api::Pod& pod, std::optional<int64_t> override_s) const {
    int64_t g = pod.spec.termination_grace_period_seconds;
    if (pod.metadata.deletion_grace_period_seconds) g = *pod.metadata.deletion_grace_period_seconds;
    if (override_s) g = *override_s;
    return std::max(g, kMinimumGracePeriodSeconds);
  }

  void SetReason(const api::Pod& pod, const std::string& container, const std::string& reason, const std::string& msg) {
    std::lock_guard<std::mutex> l(mu_);
    reasons_[pod.metadata.uid + "/" + container] = {reason, msg};
  }
  void ClearReason(const api::Pod& pod, const std::string& container) {
    std::lock_guard<std::mutex> l(mu_);
    reasons_.erase(pod.metadata.uid + "/" + container);
  }

  PodSandboxConfig BuildSandboxConfig(const api::Pod& pod, uint32_t attempt, bool record_events) {
    PodSandboxConfig c;
    auto* md = c.mutable_metadata();
    md->set_name(pod.metadata.name);
    md->set_namespace_(pod.metadata.namespace_);
    md->set_uid(pod.metadata.uid);
    md->set_attempt(attempt);
    if (!pod.spec.host_network) {
      std::string hostname = pod.spec.hostname.empty() ? pod.metadata.name : pod.spec.hostname;
      if (hostname.size() > 63) hostname = hostname.substr(0, 63);
      while (!hostname.empty() && (hostname.back() == '-' || hostname.back() == '.')) hostname.pop_back();
      c.set_hostname(hostname);
    }
    c.set_log_directory(o_.pod_logs_dir + "/" + pod.metadata.namespace_ + "_" + pod.metadata.name + "_" + pod.metadata.uid);
    BuildDNS(pod, c.mutable_dns_config(), record_events);
    for (const auto& ct : pod.spec.containers) {
      for (const auto& p : ct.ports) {
        if (p.host_port <= 0) continue;
        auto* pm = c.add_port_mappings();
        pm->set_protocol(p.protocol == "UDP" ? cri::rt::UDP : p.protocol == "SCTP" ? cri::rt::SCTP : cri::rt::TCP);
        pm->set_container_port(p.container_port);
        pm->set_host_port(p.host_port);
        pm->set_host_ip(p.host_ip);
      }
    }
    auto& labels = *c.mutable_labels();
    for (const auto& [k, v] : pod.metadata.labels) labels[k] = v;
    labels[kPodNameLabel] = pod.metadata.name;
    labels[kPodNamespaceLabel] = pod.metadata.namespace_;
    labels[kPodUIDLabel] = pod.metadata.uid;
    auto& ann = *c.mutable_annotations();
    for (const auto& [k, v] : pod.metadata.annotations) ann[k] = v;
    auto* sc = c.mutable_linux()->mutable_security_context();
    auto* ns = sc->mutable_namespace_options();
    ns->set_network(pod.spec.host_network ? cri::rt::NODE : cri::rt::POD);
    ns->set_pid(pod.spec.host_pid ? cri::rt::NODE : cri::rt::CONTAINER);
    ns->set_ipc(pod.spec.host_ipc ? cri::rt::NODE : cri::rt::POD);
    BuildSandboxSecurityContext(pod, Security(), c.mutable_linux());
    if (d_.pod_cgroup_parent)
      if (std::string parent = d_.pod_cgroup_parent(pod); !parent.empty()) c.mutable_linux()->set_cgroup_parent(parent);
    return c;
  }

  void BuildDNS(const api::Pod& pod, cri::rt::DNSConfig* dns, bool record_events) {
    std::string policy = pod.spec.dns_policy;
    if (policy == "ClusterFirst" && pod.spec.host_network) policy = "Default";
    if (policy == "ClusterFirstWithHostNet") policy = "ClusterFirst";
    if ((policy == "ClusterFirst") && o_.cluster_dns.empty()) {
      if (record_events) d_.recorder->PodEvent(pod, events::kWarning, events::kMissingClusterDNS,
                            "pod: \"" + pod.metadata.name + "_" + pod.metadata.namespace_ +
                                "\". kubelet does not have ClusterDNS IP configured and cannot create Pod using "
                                "\"ClusterFirst\" policy. Falling back to \"Default\" policy.");
      policy = "Default";
    }
    if (policy == "Default") {
      ResolvConf rc = ReadResolvConf(o_.resolv_conf);
      for (const auto& s : rc.servers) dns->add_servers(s);
      for (const auto& s : rc.searches) dns->add_searches(s);
      for (const auto& s : rc.options) dns->add_options(s);
    } else if (policy == "ClusterFirst") {
      for (const auto& s : o_.cluster_dns) dns->add_servers(s);
      if (!o_.cluster_domain.empty()) {
        dns->add_searches(pod.metadata.namespace_ + ".svc." + o_.cluster_domain);
        dns->add_searches("svc." + o_.cluster_domain);
        dns->add_searches(o_.cluster_domain);
      }
      ResolvConf rc = ReadResolvConf(o_.resolv_conf);
      for (const auto& s : rc.searches) dns->add_searches(s);
      dns->add_options("ndots:5");
    }
    if (pod.spec.dns_config) {
      const auto& dc = *pod.spec.dns_config;
      if (policy == "None") {
        dns->clear_servers();
        dns->clear_searches();
        dns->clear_options();
      }
      for (const auto& s : dc.nameservers) dns->add_servers(s);
      for (const auto& s : dc.searches) dns->add_searches(s);
      for (const auto& [name, value] : dc.options) dns->add_options(value ? name + ":" + *value : name);
    }
  }

  std::string WriteHostsFile(const api::Pod& pod, const std::vector<std::string>& ips) {
    if (pod.spec.host_network) return "";
    std::string dir = o_.pods_dir + "/" + pod.metadata.uid;
    std::error_code ec;
    fs::create_directories(dir, ec);
    std::string path = dir + "/etc-hosts";
    std::string hostname = pod.spec.hostname.empty() ? pod.metadata.name : pod.spec.hostname;
    std::ostringstream out;
    out << "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        << "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
    // With a subdomain the pod's FQDN comes first: <hostname>.<subdomain>.<namespace>.svc.<clusterDomain>.
    std::string fqdn;
    if (!pod.spec.subdomain.empty() && !o_.cluster_domain.empty())
      fqdn = hostname + "." + pod.spec.subdomain + "." + pod.metadata.namespace_ + ".svc." + o_.cluster_domain;
    for (const auto& ip : ips) out << ip << "\t" << (fqdn.empty() ? "" : fqdn + "\t") << hostname << "\n";
    if (!pod.spec.host_aliases.empty()) {
      out << "\n# Entries added by HostAliases.\n";
      for (const auto& a : pod.spec.host_aliases) {
        if (a.ip.empty()) continue;
        out << a.ip;
        for (const auto& h : a.hostnames) out << "\t" << h;
        out << "\n";
      }
    }
    std::ofstream f(path, std::ios::trunc);
    f << out.str();
    return f ? path : "";
  }

  // A running pod with nothing to start: the API-backed volumes' contents follow their objects (upstream remounts
  // them on each sync). A failure is reported and changes nothing that runs.
  void RefreshVolumes(const api::Pod& pod) {
    if (pod.spec.volumes.empty()) return;
    // Set up already: this returns at once and the reconciler brings the contents up to date on its own thread.
    if (auto v = d_.volumes->WaitForAttachAndMount(pod); !v.ok() && v.status().code() != absl::StatusCode::kCancelled) {
      d_.recorder->PodEvent(pod, events::kWarning, events::kFailedMount,
                            "Unable to attach or mount volumes: " + std::string(v.status().message()));
      log_->error("Unable to attach or mount volumes of running pod pod=\"{}\" err=\"{}\"", PodDesc(pod), v.status().message());
    }
  }

  // EnsureImageExists as upstream: honours imagePullPolicy and backs off failed pulls.
  absl::StatusOr<std::string> EnsureImage(const api::Pod& pod, const api::Container& c, const PodSandboxConfig& sc) {
    cri::rt::ImageSpec spec;
    spec.set_image(c.image);
    auto present = d_.images->ImageStatus(spec);
    if (!present.ok()) {
      SetReason(pod, c.name, "ErrImageInspect", std::string(present.status().message()));
      return absl::Status(present.status().code(),
                          "Failed to inspect image \"" + c.image + "\": " + std::string(present.status().message()));
    }
    bool have = present->has_value();
    const std::string& policy = c.image_pull_policy;
    bool pull = policy == "Always" || (policy != "Never" && !have);
    if (!pull) {
      if (!have) {
        std::string msg = "Container image \"" + c.image + "\" is not present with pull policy of Never";
        d_.recorder->PodEvent(pod, events::kWarning, events::kErrImageNeverPull, msg);
        SetReason(pod, c.name, "ErrImageNeverPull", msg);
        return absl::FailedPreconditionError(msg);
      }
      d_.recorder->PodEvent(pod, events::kNormal, events::kPulled,
                            "Container image \"" + c.image + "\" already present on machine");
      return (*present)->id();
    }
    std::string key = c.image + "/" + pod.metadata.uid;
    if (image_backoff_.IsInBackOffSince(key, d_.clock->Now())) {
      std::string msg = "Back-off pulling image \"" + c.image + "\"";
      d_.recorder->PodEvent(pod, events::kNormal, events::kBackOff, msg);
      SetReason(pod, c.name, "ImagePullBackOff", msg);
      return absl::UnavailableError(msg);
    }
    d_.recorder->PodEvent(pod, events::kNormal, events::kPulling, "Pulling image \"" + c.image + "\"");
    auto start = std::chrono::steady_clock::now();
    if (!pulls_.Acquire()) return absl::CancelledError("pod is being killed, not pulling image \"" + c.image + "\"");
    auto ref = d_.images->PullImage(spec, nullptr, &sc);
    pulls_.Release();
    // A kill of this pod cancelled the pull: not a failure of the image, so no back-off and no ErrImagePull.
    if (!ref.ok() && CancelScope::Cancelled())
      return absl::CancelledError("pod is being killed, pull of image \"" + c.image + "\" cancelled");
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!ref.ok()) {
      image_backoff_.Next(key, d_.clock->Now());
      std::string msg = "Failed to pull image \"" + c.image + "\": " + std::string(ref.status().message());
      d_.recorder->PodEvent(pod, events::kWarning, events::kFailed, msg);
      d_.recorder->PodEvent(pod, events::kWarning, events::kFailed, "Error: ErrImagePull");
      SetReason(pod, c.name, "ErrImagePull", msg);
      return absl::Status(ref.status().code(), msg);
    }
    if (d_.metrics) d_.metrics->image_pull_duration.Add({{"image_size_in_bytes", "unknown"}}, prometheus::Histogram::BucketBoundaries{0.5, 1, 5, 10, 30, 60, 120, 300, 600}).Observe(secs);
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.3fs", secs);
    d_.recorder->PodEvent(pod, events::kNormal, events::kPulled, "Successfully pulled image \"" + c.image + "\" in " + buf);
    return *ref;
  }

  absl::Status StartContainer(const api::Pod& pod, const api::Container& c, const PodStatus& status,
                              const std::string& sandbox_id, const PodSandboxConfig& sandbox_config,
                              const volumemanager::PodVolumes& volumes, const std::string& hosts_file,
                              const std::vector<std::string>& pod_ips, Backoff* backoff) {
    const ContainerStatus* prev = status.FindContainer(c.name);
    const char* type = "container";
    for (const auto& ic : pod.spec.init_containers)
      if (ic.name == c.name) type = "init_container";
    // Crash-loop back-off, keyed like upstream's getStableKey.
    if (prev && prev->state == ContainerState::kExited && backoff) {
      std::string key = pod.metadata.name + "_" + pod.metadata.namespace_ + "_" + pod.metadata.uid + "_" + c.name + "_" + HashContainer(c);
      if (backoff->IsInBackOffSince(key, prev->finished_at)) {
        std::string dur = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(backoff->Get(key)).count()) + "s";
        std::string msg = "back-off " + dur + " restarting failed container=" + c.name + " pod=" + pod.metadata.name +
                          "_" + pod.metadata.namespace_ + "(" + pod.metadata.uid + ")";
        d_.recorder->PodEvent(pod, events::kWarning, events::kBackOff, "Back-off restarting failed container " + c.name + " in pod " + pod.metadata.name + "_" + pod.metadata.namespace_ + "(" + pod.metadata.uid + ")");
        SetReason(pod, c.name, "CrashLoopBackOff", msg);
        return absl::UnavailableError(msg);
      }
      backoff->Next(key, prev->finished_at);
    }
    auto image_ref = EnsureImage(pod, c, sandbox_config);
    if (!image_ref.ok()) {
      if (d_.metrics) d_.metrics->started_containers_errors.Add({{"container_type", type}, {"code", "ErrImagePull"}}).Increment();
      return image_ref.status();
    }
    int32_t restart_count = prev ? prev->restart_count + 1 : 0;
    auto config = BuildContainerConfig(pod, c, restart_count, *image_ref, volumes, hosts_file, pod_ips);
    if (!config.ok()) {
      d_.recorder->PodEvent(pod, events::kWarning, events::kFailed, "Error: " + std::string(config.status().message()));
      SetReason(pod, c.name, "CreateContainerConfigError", std::string(config.status().message()));
      return config.status();
    }
    if (d_.metrics) d_.metrics->started_containers.Add({{"container_type", type}}).Increment();
    auto id = d_.runtime->CreateContainer(sandbox_id, *config, sandbox_config);
    if (!id.ok()) {
      std::string msg = std::string(id.status().message());
      d_.recorder->PodEvent(pod, events::kWarning, events::kFailed, "Error: " + msg);
      SetReason(pod, c.name, "CreateContainerError", msg);
      if (d_.metrics) d_.metrics->started_containers_errors.Add({{"container_type", type}, {"code", "CreateContainerError"}}).Increment();
      return id.status();
    }
    d_.recorder->PodEvent(pod, events::kNormal, events::kCreated, "Created container " + c.name);
    if (auto st = d_.runtime->StartContainer(*id); !st.ok()) {
      std::string msg = std::string(st.message());
      d_.recorder->PodEvent(pod, events::kWarning, events::kFailed, "Error: " + msg);
      SetReason(pod, c.name, "RunContainerError", msg);
      if (d_.metrics) d_.metrics->started_containers_errors.Add({{"container_type", type}, {"code", "RunContainerError"}}).Increment();
      return st;
    }
    d_.recorder->PodEvent(pod, events::kNormal, events::kStarted, "Started container " + c.name);
    if (c.lifecycle && c.lifecycle->post_start) {
      // postStart runs right after the start; a failure kills the container, which is then restarted per policy.
      std::string msg;
      absl::Status hook = RunHook(pod, c, *id, *c.lifecycle->post_start, pod_ips, o_.runtime_request_timeout, &msg);
      if (!hook.ok()) {
        log_->error("Failed to execute PostStartHook pod=\"{}\" containerName=\"{}\" containerID=\"{}\" err=\"{}\"", PodDesc(pod),
                    c.name, *id, hook.message());
        d_.recorder->PodEvent(pod, events::kWarning, "FailedPostStartHook", msg);
        (void)KillContainer(&pod, *id, c.name, GracePeriod(pod, std::nullopt), "FailedPostStartHook", pod_ips, false);
        SetReason(pod, c.name, "PostStartHookError", msg);
        return absl::InternalError("PostStartHookError: " + msg);
      }
    }
    LinkContainerLog(pod.metadata.name, pod.metadata.namespace_, c.name, *id,
                     sandbox_config.log_directory() + "/" + config->log_path());
    ClearReason(pod, c.name);
    return absl::OkStatus();
  }

  absl::StatusOr<ContainerConfig> BuildContainerConfig(const api::Pod& pod, const api::Container& c,
                                                       int32_t restart_count, const std::string& image_ref,
                                                       const volumemanager::PodVolumes& volumes,
                                                       const std::string& hosts_file, const std::vector<std::string>& pod_ips) {
    ContainerConfig cfg;
    cfg.mutable_metadata()->set_name(c.name);
    cfg.mutable_metadata()->set_attempt(static_cast<uint32_t>(restart_count));
    cfg.mutable_image()->set_image(image_ref);
    cfg.mutable_image()->set_user_specified_image(c.image);
    PodEnvContext ectx;
    ectx.host_ip = o_.node_ip;
    ectx.pod_ips = pod_ips;
    ectx.node_allocatable_milli_cpu = static_cast<int64_t>(std::thread::hardware_concurrency()) * 1000;
    ectx.node_allocatable_memory = o_.machine_memory_bytes;
    auto envs = MakeEnvironment(pod, c, d_.env_source, ectx);
    if (!envs.ok()) return envs.status();
    // The device plugins' part comes first, as upstream's run options: the container's own envs and mounts follow.
    cm::DeviceRunContainerOptions devices;
    if (d_.container_devices) {
      auto got = d_.container_devices(pod, c);
      if (!got.ok()) return got.status();
      devices = std::move(*got);
    }
    for (const auto& [k, v] : devices.envs) {
      auto* kv = cfg.add_envs();
      kv->set_key(k);
      kv->set_value(v);
    }
    for (const auto& m : devices.mounts) {
      auto* mount = cfg.add_mounts();
      mount->set_container_path(m.container_path);
      mount->set_host_path(m.host_path);
      mount->set_readonly(m.read_only);
    }
    for (const auto& d : devices.devices) {
      auto* dev = cfg.add_devices();
      dev->set_container_path(d.container_path);
      dev->set_host_path(d.host_path);
      dev->set_permissions(d.permissions);
    }
    for (const auto& name : devices.cdi_devices) cfg.add_cdi_devices()->set_name(name);
    std::map<std::string, std::string> env;
    for (const auto& [k, v] : *envs) {
      env[k] = v;
      auto* kv = cfg.add_envs();
      kv->set_key(k);
      kv->set_value(v);
    }
    for (const auto& s : c.command) cfg.add_command(ExpandEnv(s, env));
    for (const auto& s : c.args) cfg.add_args(ExpandEnv(s, env));
    cfg.set_working_dir(c.working_dir);
    bool mounts_hosts = false;
    for (size_t i = 0; i < c.volume_mounts.size(); ++i) {
      const api::VolumeMount& m = c.volume_mounts[i];
      auto it = volumes.find(m.name);
      if (it == volumes.end()) return absl::NotFoundError("cannot find volume \"" + m.name + "\" to mount into container \"" + c.name + "\"");
      std::string host = it->second.path;
      std::string sub_path = m.sub_path;
      if (!m.sub_path_expr.empty()) {
        std::set<std::string> missing;
        sub_path = volumemanager::ExpandSubPathExpr(m.sub_path_expr, env, &missing);
        if (!missing.empty()) {
          std::string list;
          for (const auto& k : missing) list += (list.empty() ? "" : ", ") + k;
          return absl::InvalidArgumentError("missing value for " + list);
        }
      }
      if (!sub_path.empty()) {
        if (auto st = volumemanager::ValidateSubPath(sub_path); !st.ok()) return st;
        const std::string volume_path = host;
        host = volume_path + "/" + sub_path;
        struct stat vst {};
        std::error_code ec;
        if (!fs::exists(fs::symlink_status(host, ec))) {
          // Created now with the volume's mode, so that an fsGroup's group can write to it.
          mode_t perm = ::stat(volume_path.c_str(), &vst) == 0 ? (vst.st_mode & 07777) : 0755;
          if (auto st = volumemanager::SafeMakeDir(sub_path, volume_path, perm); !st.ok()) {
            // The detail stays in the log: it could tell the pod's owner about the host's filesystem.
            log_->error("Failed to create subPath directory for volumeMount of the container containerName=\"{}\" volumeMountName=\"{}\" err=\"{}\"",
                        c.name, m.name, st.message());
            return absl::InvalidArgumentError("failed to create subPath directory for volumeMount \"" + m.name +
                                              "\" of container \"" + c.name + "\"");
          }
        }
        volumemanager::Subpath sp;
        sp.volume_mount_index = static_cast<int>(i);
        sp.path = host;
        sp.volume_name = m.name;
        sp.volume_path = volume_path;
        sp.pod_dir = o_.pods_dir + "/" + pod.metadata.uid;
        sp.container_name = c.name;
        auto target = volumemanager::PrepareSafeSubpath(sp);
        if (!target.ok()) {
          log_->error("Failed to prepare subPath for volumeMount of the container containerName=\"{}\" volumeMountName=\"{}\" err=\"{}\"",
                      c.name, m.name, target.status().message());
          return absl::InvalidArgumentError("failed to prepare subPath for volumeMount \"" + m.name + "\" of container \"" +
                                            c.name + "\"");
        }
        host = *target;
      }
      auto* mount = cfg.add_mounts();
      mount->set_container_path(m.mount_path);
      mount->set_host_path(host);
      // A read-only claim (or a volume the manager marks read-only) is mounted read-only whatever the mount says.
      mount->set_readonly(m.read_only || it->second.read_only);
      if (m.mount_propagation == "HostToContainer") mount->set_propagation(cri::rt::PROPAGATION_HOST_TO_CONTAINER);
      if (m.mount_propagation == "Bidirectional") mount->set_propagation(cri::rt::PROPAGATION_BIDIRECTIONAL);
      if (m.mount_path == "/etc/hosts") mounts_hosts = true;
    }
    if (!hosts_file.empty() && !mounts_hosts) {
      auto* mount = cfg.add_mounts();
      mount->set_container_path("/etc/hosts");
      mount->set_host_path(hosts_file);
    }
    // Termination message file: a fresh file per container instance, mounted at terminationMessagePath.
    if (!c.termination_message_path.empty()) {
      std::string dir = o_.pods_dir + "/" + pod.metadata.uid + "/containers/" + c.name;
      std::error_code ec;
      fs::create_directories(dir, ec);
      std::string file = dir + "/" + std::to_string(restart_count) + "-" + std::to_string(ToUnixNanos(d_.clock->Now()) % 100000000);
      int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0666);
      if (fd >= 0) {
        ::fchmod(fd, 0666);
        ::close(fd);
        auto* mount = cfg.add_mounts();
        mount->set_container_path(c.termination_message_path);
        mount->set_host_path(file);
      }
    }
    auto& labels = *cfg.mutable_labels();
    labels[kPodNameLabel] = pod.metadata.name;
    labels[kPodNamespaceLabel] = pod.metadata.namespace_;
    labels[kPodUIDLabel] = pod.metadata.uid;
    labels[kContainerNameLabel] = c.name;
    auto& ann = *cfg.mutable_annotations();
    for (const auto& [k, v] : devices.annotations) ann[k] = v;  // the kubelet's own below win
    ann[kContainerHashAnnotation] = HashContainer(c);
    ann[kContainerRestartCountAnnotation] = std::to_string(restart_count);
    ann[kContainerTerminationMessagePathAnnotation] = c.termination_message_path;
    ann[kContainerTerminationMessagePolicyAnnotation] = c.termination_message_policy;
    ann[kPodTerminationGracePeriodAnnotation] = std::to_string(pod.spec.termination_grace_period_seconds);
    if (pod.metadata.deletion_grace_period_seconds)
      ann[kPodDeletionGracePeriodAnnotation] = std::to_string(*pod.metadata.deletion_grace_period_seconds);
    if (!c.ports.empty()) {
      nlohmann::json ports = nlohmann::json::array();
      for (const auto& p : c.ports) {
        nlohmann::json pj = {{"containerPort", p.container_port}, {"protocol", p.protocol}};
        if (!p.name.empty()) pj["name"] = p.name;
        if (p.host_port) pj["hostPort"] = p.host_port;
        ports.push_back(pj);
      }
      ann[kContainerPortsAnnotation] = DumpJSON(ports);
    }
    cfg.set_log_path(c.name + "/" + std::to_string(restart_count) + ".log");
    cfg.set_stdin(c.stdin);
    cfg.set_stdin_once(c.stdin_once);
    cfg.set_tty(c.tty);
    auto* lin = cfg.mutable_linux();
    SetResources(pod, c, lin->mutable_resources());
    std::optional<ImageUser> image_user;
    if (NeedsImageUser(pod, c)) {
      // runAsNonRoot with no runAsUser: the image's user decides.
      cri::rt::ImageSpec spec;
      spec.set_image(image_ref);
      auto st = d_.images->ImageStatus(spec);
      if (!st.ok()) return st.status();
      ImageUser u;
      if (*st && (*st)->has_uid()) u.uid = (*st)->uid().value();
      if (*st) u.username = (*st)->username();
      image_user = u;
    }
    if (auto st = BuildContainerSecurityContext(pod, c, Security(), image_user, lin->mutable_security_context()); !st.ok())
      return st;
    auto* ns = lin->mutable_security_context()->mutable_namespace_options();
    ns->set_network(pod.spec.host_network ? cri::rt::NODE : cri::rt::POD);
    ns->set_pid(pod.spec.host_pid ? cri::rt::NODE : cri::rt::CONTAINER);
    ns->set_ipc(pod.spec.host_ipc ? cri::rt::NODE : cri::rt::POD);
    if (d_.container_cpuset)
      if (std::string cpus = d_.container_cpuset(pod, c.name); !cpus.empty()) lin->mutable_resources()->set_cpuset_cpus(cpus);
    return cfg;
  }

  // CPU shares, CFS quota, memory limit and oom_score_adj as upstream derives them.
  void SetResources(const api::Pod& pod, const api::Container& c, cri::rt::LinuxContainerResources* r) {
    auto milli = [](const api::StringMap& m, const char* k) -> int64_t {
      auto it = m.find(k);
      if (it == m.end()) return 0;
      auto q = api::ParseQuantity(it->second);
      return q.ok() ? q->MilliValue() : 0;
    };
    auto bytes = [](const api::StringMap& m, const char* k) -> int64_t {
      auto it = m.find(k);
      if (it == m.end()) return 0;
      auto q = api::ParseQuantity(it->second);
      return q.ok() ? q->Value() : 0;
    };
    int64_t cpu_req = milli(c.resources.requests, "cpu");
    int64_t cpu_lim = milli(c.resources.limits, "cpu");
    if (cpu_req == 0 && cpu_lim != 0) cpu_req = cpu_lim;
    int64_t shares = cpu_req == 0 ? 2 : std::max<int64_t>(2, cpu_req * 1024 / 1000);
    r->set_cpu_shares(shares);
    if (cpu_lim > 0 && o_.cpu_cfs_quota) {
      int64_t period = std::chrono::duration_cast<std::chrono::microseconds>(o_.cpu_cfs_quota_period).count();
      r->set_cpu_period(period);
      r->set_cpu_quota(std::max<int64_t>(1000, cpu_lim * period / 1000));
    }
    int64_t mem_lim = bytes(c.resources.limits, "memory");
    if (mem_lim > 0) r->set_memory_limit_in_bytes(mem_lim);
    std::string qos = api::QOSClass(pod);
    int64_t oom = 0;
    if (qos == "Guaranteed") {
      oom = -997;
    } else if (qos == "BestEffort") {
      oom = 1000;
    } else {
      int64_t mem_req = bytes(c.resources.requests, "memory");
      if (mem_req == 0) mem_req = mem_lim;
      int64_t cap = o_.machine_memory_bytes > 0 ? o_.machine_memory_bytes : 1;
      oom = 1000 - (1000 * mem_req) / cap;
      oom = std::clamp<int64_t>(oom, 2, 999);
    }
    r->set_oom_score_adj(oom);
  }

  RuntimeManagerDeps d_;
  RuntimeManagerOptions o_;
  std::shared_ptr<spdlog::logger> log_;
  Backoff image_backoff_;
  PullLimiter pulls_;
  std::mutex mu_;
  std::string runtime_type_;
  std::map<std::string, WaitingReason> reasons_;
};

}  // namespace

std::unique_ptr<RuntimeManager> NewRuntimeManager(const RuntimeManagerDeps& deps, const RuntimeManagerOptions& options) {
  return std::make_unique<RuntimeManagerImpl>(deps, options);
}

}  // namespace kubelet::kuberuntime
