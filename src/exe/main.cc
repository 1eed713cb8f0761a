// kubelet-cpp: the node agent's entry point. Parses flags and the config
// file, connects to the CRI runtime, and runs the kubelet until SIGTERM or
// SIGINT. Stopping the kubelet never stops the pods it runs.
#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <tuple>
#include <vector>

#include "kubelet/api/codec.h"
#include "kubelet/api/quantity.h"
#include "kubelet/certificate/certificate_manager.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/kubeconfig.h"
#include "kubelet/cm/container_manager.h"
#include "kubelet/cm/cpu_manager.h"
#include "kubelet/cm/topologymanager.h"
#include "kubelet/config/kubelet_config.h"
#include "kubelet/nodestatus/node_status.h"
#include "kubelet/status/status_syncer.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/cm/devicemanager.h"
#include "kubelet/events/recorder.h"
#include "kubelet/stats/fs_resource_analyzer.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kuberuntime/log_manager.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/network/cni.h"
#include "kubelet/server/server.h"
#include "kubelet/stats/provider.h"
#include "kubelet/eviction/eviction_manager.h"
#include "kubelet/images/image_gc_manager.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/json.h"
#include "kubelet/util/forced_exit.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/mount.h"
#include "kubelet/util/node_info.h"
#include "kubelet/util/sd_notify.h"
#include "kubelet/kuberuntime/types.h"
#include "kubelet/runtimeclass/runtimeclass_manager.h"
#include "kubelet/server/podresources.h"
#include "kubelet/pluginmanager/plugin_manager.h"
#include "kubelet/volumemanager/csi.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace {

int WaitForSignal(sigset_t* set, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  return sigtimedwait(set, nullptr, &ts);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kubelet;
  // Two malloc arenas, not glibc's eight per core: the managers' threads otherwise each grow an arena of their
  // own (measured: 51.9 -> 39.8 MiB RSS at 110 pods, docs/performance.md). MALLOC_ARENA_MAX, when set, wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto opts = config::ParseCommandLine(args);
  if (!opts.ok()) {
    std::cerr << "E " << "command failed err=\"" << opts.status().message() << "\"\n";
    return 1;
  }
  if (opts->flags.help) {
    std::cout << config::Usage();
    return 0;
  }
  if (opts->flags.version) {
    std::cout << "Kubernetes " << kKubeletVersion << "\n";
    return 0;
  }
  int verbosity = opts->flags.verbosity;
  // logging.verbosity in the config file applies unless --v was given, as upstream.
  bool v_flag = false;
  for (const auto& a : args) v_flag |= a.rfind("--v=", 0) == 0 || a == "--v" || a.rfind("-v=", 0) == 0 || a == "-v";
  if (!v_flag && opts->config.logging.contains("verbosity") && opts->config.logging["verbosity"].is_number_integer())
    verbosity = opts->config.logging["verbosity"].get<int>();
  log::Init(verbosity);
  auto logger = log::Get("kubelet");
  const auto& cfg = opts->config;
  const auto& flags = opts->flags;

  // Signals go to sigtimedwait below, never to a random thread.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string node_name = config::NodeName(flags);
  std::string node_ip = flags.node_ip.empty() ? DetectNodeIP() : flags.node_ip;
  logger->info("kubelet-cpp {} (Kubernetes {}) node=\"{}\" nodeIP=\"{}\" rootDir=\"{}\"", kKubeletCppVersion,
               kKubeletVersion, node_name, node_ip, flags.root_dir);
  if (cfg.static_pod_path.empty() && cfg.static_pod_url.empty() && flags.kubeconfig.empty())
    logger->warn("No pod source configured: set staticPodPath (--pod-manifest-path), staticPodURL or --kubeconfig");
  // Credentials (upstream's buildKubeletClientConfig). With rotateCertificates the client certificate comes from the
  // client certificate manager: from the kubeconfig's at first, or, when the kubeconfig is missing or expired and a
  // bootstrap kubeconfig is given, requested in the background with the bootstrap credentials while static pods
  // already run. Without rotation, a bootstrap happens first, retried with back-off until it succeeds.
  std::optional<client::RestConfig> rest;
  std::unique_ptr<client::ApiClient> api;
  std::unique_ptr<client::ApiClient> bootstrap_api;
  std::unique_ptr<certificate::Manager> client_certs;
  RealClock clock;
  metrics::KubeletMetrics metrics;
  if (!flags.bootstrap_kubeconfig.empty() && flags.kubeconfig.empty()) {
    logger->error("Failed to run Kubelet err=\"--bootstrap-kubeconfig requires --kubeconfig, the file to write\"");
    return 1;
  }
  if (!flags.bootstrap_kubeconfig.empty() && !cfg.rotate_certificates &&
      !certificate::ClientConfigStillValid(flags.kubeconfig)) {
    std::atomic<bool> stop_boot{false}, done{false};
    std::thread boot([&] {
      GuardedRun("tls-bootstrap", [&] {
        auto backoff = std::chrono::seconds(2);
        while (!stop_boot) {
          auto st = certificate::LoadClientCert(flags.kubeconfig, flags.bootstrap_kubeconfig, flags.cert_dir, node_name,
                                                std::chrono::hours(1), &stop_boot);
          if (st.ok() || stop_boot) break;
          logger->error("Failed to bootstrap the client certificate err=\"{}\" retryIn=\"{}s\"", st.message(), backoff.count());
          for (int i = 0; i < backoff.count() * 10 && !stop_boot; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
          backoff = std::min(backoff * 2, std::chrono::seconds(300));
        }
      });
      done = true;
    });
    while (!done) {
      if (WaitForSignal(&sigs, std::chrono::milliseconds(200)) > 0) {
        stop_boot = true;
        boot.join();
        return 0;
      }
    }
    boot.join();
  }
  if (!flags.kubeconfig.empty()) {
    std::optional<absl::StatusOr<client::RestConfig>> boot_rc;
    if (cfg.rotate_certificates && !flags.bootstrap_kubeconfig.empty() && !certificate::ClientConfigStillValid(flags.kubeconfig)) {
      logger->info("Client rotation is on, will bootstrap in background");
      boot_rc = client::LoadKubeconfig(flags.bootstrap_kubeconfig);
      if (!boot_rc->ok()) {
        logger->error("Failed to run Kubelet err=\"unable to load bootstrap kubeconfig: {}\"", boot_rc->status().message());
        return 1;
      }
      const auto& boot = *boot_rc;
      client::ClientOptions bo;
      bo.qps = 5;
      bo.burst = 10;
      bo.max_retries = 3;
      bootstrap_api = client::NewApiClient(*boot, bo);
      if (auto st = certificate::WriteBootstrappedKubeconfig(*boot, flags.kubeconfig,
                                                             certificate::FileStore("kubelet-client", flags.cert_dir).CurrentPath());
          !st.ok()) {
        logger->error("Failed to run Kubelet err=\"{}\"", st.message());
        return 1;
      }
    }
    auto rc = client::LoadKubeconfig(flags.kubeconfig);
    if (!rc.ok() && !bootstrap_api) {
      logger->error("Failed to load kubeconfig err=\"{}\"", rc.status().message());
      return 1;
    }
    if (!rc.ok()) {
      // The kubeconfig names the store's current pair, which the bootstrap has yet to write: the cluster is the same.
      rc = **boot_rc;
      rc->client_cert_pem.clear();
      rc->client_key_pem.clear();
      rc->bearer_token.clear();
      rc->token_file.clear();
    }
    if (cfg.rotate_certificates && (bootstrap_api || !rc->client_cert_pem.empty())) {
      certificate::ManagerOptions mo;
      mo.name = "client";
      mo.signer_name = certificate::kKubeAPIServerClientKubeletSigner;
      mo.subject = [node_name] { return certificate::Subject{"system:node:" + node_name, {"system:nodes"}, {}, {}}; };
      mo.usages = {"digital signature", "client auth"};
      mo.store = std::make_unique<certificate::FileStore>("kubelet-client", flags.cert_dir);
      if (!rc->client_cert_pem.empty()) {
        auto initial = certificate::ParseKeyPair(rc->client_cert_pem, rc->client_key_pem);
        if (initial.ok()) {
          mo.initial = std::move(*initial);
        } else {
          logger->error("Unable to read the kubeconfig's client certificate path=\"{}\" err=\"{}\"", flags.kubeconfig,
                        initial.status().message());
        }
      }
      mo.clock = &clock;
      mo.on_ttl = [&metrics](double ttl) { metrics.client_cert_ttl.Set(ttl); };
      mo.on_error = [&metrics] { metrics.client_cert_renew_errors.Increment(); };
      // Renewal goes through the node's own client while its certificate is valid, else the bootstrap credentials.
      mo.client = [&api, &bootstrap_api](const certificate::KeyPair* current) -> client::ApiClient* {
        return current || !bootstrap_api ? api.get() : bootstrap_api.get();
      };
      client_certs = std::make_unique<certificate::Manager>(std::move(mo));
      rc->cert_provider = [m = client_certs.get()]() -> std::shared_ptr<const TLSCertificate> { return m->Current(); };
    }
    rest = *rc;
    client::ClientOptions co;
    co.qps = cfg.kube_api_qps;
    co.burst = cfg.kube_api_burst;
    api = client::NewApiClient(*rest, co);
    logger->info("Connecting to the API server server=\"{}\"", rest->server);
    if (client_certs) {
      KLOG_V(logger, 2)("Starting client certificate rotation");
      client_certs->Start();
    }
  } else {
    logger->info("No --kubeconfig: standalone mode, no API server");
  }

  std::error_code ec;
  for (const auto& dir : {flags.root_dir, flags.root_dir + "/pods", cfg.pod_logs_dir}) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      logger->error("Failed to create directory path=\"{}\" err=\"{}\"", dir, ec.message());
      return 1;
    }
  }
  // As upstream's setupDataDirs: the root directory is a shared mount, so volumes under it can be mounted with
  // HostToContainer and Bidirectional propagation.
  if (auto st = mount::MakeRShared(std::filesystem::weakly_canonical(flags.root_dir).string()); !st.ok()) {
    logger->error("Failed to run Kubelet err=\"error configuring root directory: {}\"", st.message());
    return 1;
  }

  cri::RemoteOptions ro;
  ro.runtime_endpoint = cfg.container_runtime_endpoint;
  ro.image_endpoint = cfg.image_service_endpoint;
  ro.timeout = cfg.runtime_request_timeout;
  ro.metrics = &metrics;
  auto remote = cri::NewRemoteRuntime(ro);
  std::unique_ptr<client::ApiClient> event_api;
  std::unique_ptr<events::LoggingRecorder> recorder_owner;
  events::APIRecorder* api_recorder = nullptr;
  if (api) {
    // Events get a client of their own, as upstream: their rate (eventRecordQPS) never slows pod status writes.
    client::ClientOptions eo;
    eo.qps = 0;  // the recorder applies eventRecordQPS/eventBurst itself
    eo.max_retries = 2;
    event_api = client::NewApiClient(*rest, eo);
    auto r = std::make_unique<events::APIRecorder>(event_api.get(), node_name, cfg.event_record_qps, cfg.event_burst);
    api_recorder = r.get();
    recorder_owner = std::move(r);
  } else {
    recorder_owner = std::make_unique<events::LoggingRecorder>();
  }
  events::LoggingRecorder& recorder = *recorder_owner;
  kuberuntime::RuntimeManagerOptions rmo;
  rmo.pod_logs_dir = cfg.pod_logs_dir;
  rmo.pods_dir = flags.root_dir + "/pods";
  rmo.cluster_dns = cfg.cluster_dns;
  rmo.cluster_domain = cfg.cluster_domain;
  rmo.resolv_conf = cfg.resolv_conf;
  rmo.serialize_image_pulls = cfg.serialize_image_pulls;
  rmo.max_parallel_image_pulls = cfg.max_parallel_image_pulls;
  rmo.cpu_cfs_quota = cfg.cpu_cfs_quota;
  rmo.cpu_cfs_quota_period = cfg.cpu_cfs_quota_period;
  rmo.machine_memory_bytes = MachineMemoryBytes();
  rmo.node_name = node_name;
  rmo.node_ip = node_ip;
  rmo.runtime_request_timeout = cfg.runtime_request_timeout;
  rmo.seccomp_default = cfg.seccomp_default;
  rmo.allow_privileged = flags.allow_privileged;
  std::unique_ptr<kuberuntime::EnvSource> env_source;
  if (api) {
    env_source = kuberuntime::NewAPIEnvSource(api.get(), kuberuntime::EnvFreshness(cfg.config_map_and_secret_change_detection_strategy));
    // Watch (the default): one watch per object the node's pods reference, as upstream's watch-based manager.
    if (cfg.config_map_and_secret_change_detection_strategy == "Watch")
      env_source = kuberuntime::NewWatchBasedEnvSource(api.get(), std::move(env_source));
  }
  // configMap, secret and projected volumes read through the same cache as the environment; tokens come from the
  // TokenRequest API, bound to the pod.
  volumemanager::VolumeDeps vdeps;
  vdeps.clock = &clock;
  if (env_source) {
    auto* src = env_source.get();
    vdeps.get_object = [src](const std::string& resource, const std::string& ns, const std::string& name) {
      return src->Get(resource, ns, name);
    };
    auto* client = api.get();
    vdeps.request_token = [client](const std::string& ns, const std::string& sa, const nlohmann::json& req) {
      return client->Create("/api/v1/namespaces/" + ns + "/serviceaccounts/" + sa + "/token", req);
    };
  }
  {
    nodestatus::NodeOptions alloc;
    alloc.system_reserved = cfg.system_reserved;
    alloc.kube_reserved = cfg.kube_reserved;
    alloc.eviction_hard = cfg.eviction_hard;
    auto allocatable = nodestatus::AllocatableCpuMemory(alloc);
    vdeps.node_allocatable = [allocatable] { return allocatable; };
  }
  vdeps.node_name = node_name;
  // The node status manager comes later (it reports the volume manager's volumesInUse): its labels through a
  // pointer set once it exists, before any pod is synced.
  std::atomic<nodestatus::NodeStatusManager*> late_node_status{nullptr};
  vdeps.node_labels = [&late_node_status]() -> std::optional<std::map<std::string, std::string>> {
    auto* ns = late_node_status.load();
    return ns ? ns->NodeLabels() : std::nullopt;
  };
  if (api)
    vdeps.patch_pvc_status = [client = api.get()](const std::string& ns, const std::string& name, const nlohmann::json& patch) {
      return client->Patch("/api/v1/namespaces/" + ns + "/persistentvolumeclaims/" + name + "/status", patch,
                           client::PatchType::kMerge).status();
    };
  vdeps.record_event = [&recorder](const api::Pod& pod, const std::string& type, const std::string& reason,
                                   const std::string& message) { recorder.PodEvent(pod, type, reason, message); };
  // CSI: drivers register through the plugin manager; their volumes are set up by the volume manager.
  volumemanager::CSIDriverStore csi_drivers;
  std::unique_ptr<volumemanager::NodeInfoManager> node_info;
  if (api) node_info = std::make_unique<volumemanager::NodeInfoManager>(api.get(), node_name);
  volumemanager::CSIPluginHandler csi_handler(&csi_drivers, node_info.get());
  volumemanager::CSIDeps csid;
  csid.drivers = &csi_drivers;
  csid.root_dir = std::filesystem::weakly_canonical(flags.root_dir).string();
  csid.node_name = node_name;
  if (api) {
    auto* client = api.get();
    auto* src = env_source.get();
    csid.get_object = [client, src](const std::string& resource, const std::string& ns,
                                    const std::string& name) -> absl::StatusOr<nlohmann::json> {
      if (resource == "secrets" && src) return src->Get(resource, ns, name);
      if (resource == "csidrivers" || resource == "volumeattachments")
        return client->Get("/apis/storage.k8s.io/v1/" + resource + "/" + name);
      return client->Get(ns.empty() ? "/api/v1/" + resource + "/" + name : "/api/v1/namespaces/" + ns + "/" + resource + "/" + name);
    };
    csid.token = [client](const api::Pod& pod, const std::string& audience,
                          int64_t expiration) -> absl::StatusOr<std::pair<std::string, std::string>> {
      nlohmann::json req = {{"apiVersion", "authentication.k8s.io/v1"},
                            {"kind", "TokenRequest"},
                            {"spec",
                             {{"audiences", audience.empty() ? nlohmann::json(nullptr) : nlohmann::json::array({audience})},
                              {"expirationSeconds", expiration},
                              {"boundObjectRef", {{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod.metadata.name}, {"uid", pod.metadata.uid}}}}}};
      std::string sa = pod.spec.service_account_name.empty() ? "default" : pod.spec.service_account_name;
      auto r = client->Create("/api/v1/namespaces/" + pod.metadata.namespace_ + "/serviceaccounts/" + sa + "/token", req);
      if (!r.ok()) return r.status();
      const nlohmann::json st = r->is_object() ? r->value("status", nlohmann::json::object()) : nlohmann::json::object();
      if (!st.is_object() || !st.contains("token") || !st["token"].is_string())
        return absl::UnavailableError("the TokenRequest answer carries no token");
      return std::make_pair(st["token"].get<std::string>(), api::StringField(st, "expirationTimestamp"));
    };
  }
  csid.volumes_attached = [&late_node_status]() -> std::optional<std::vector<std::string>> {
    auto* ns = late_node_status.load();
    return ns ? ns->VolumesAttached() : std::nullopt;
  };
  volumemanager::CSIVolumes csi_volumes(std::move(csid));
  vdeps.csi = &csi_volumes;
  pluginmanager::PluginManagerOptions pmo;
  pmo.dir = flags.root_dir + "/plugins_registry";
  auto plugin_manager = pluginmanager::NewPluginManager(pmo);
  plugin_manager->AddHandler(pluginmanager::kCSIPlugin, &csi_handler);
  // The topology manager (topologyManagerPolicy, topologyManagerScope): the CPU and device managers' hints merged at
  // admission, over the machine's NUMA nodes.
  std::atomic<Kubelet*> kubelet_ptr{nullptr};
  cm::TopologyManagerOptions tmo;
  tmo.policy = cfg.topology_manager_policy;
  tmo.scope = cfg.topology_manager_scope;
  tmo.policy_options = cfg.topology_manager_policy_options;
  tmo.on_request = [&metrics] { metrics.topology_admission_requests.Increment(); };
  tmo.on_error = [&metrics] { metrics.topology_admission_errors.Increment(); };
  tmo.on_duration = [&metrics](double ms) { metrics.topology_admission_duration.Observe(ms); };
  tmo.active_pods = [&kubelet_ptr] {
    std::set<std::string> uids;
    if (auto* k = kubelet_ptr.load())
      for (const auto& p : k->ActivePods()) uids.insert(p.metadata.uid);
    return uids;
  };
  auto topology = cm::TopologyManager::New(cm::DiscoverNUMA(), tmo);
  if (!topology.ok()) {
    logger->error("Failed to start ContainerManager err=\"failed to initialize topology manager: {}\"", topology.status().message());
    return 1;
  }
  std::unique_ptr<cm::TopologyManager> topology_manager = std::move(*topology);
  // Device plugins: kubelet.sock in <root-dir>/device-plugins, and plugins_registry sockets of type DevicePlugin.
  cm::DeviceManagerOptions dmo;
  dmo.socket_dir = flags.root_dir + "/device-plugins";
  dmo.numa_nodes = topology_manager->numa().nodes;
  // It sees the kubelet's pods once the Kubelet exists, and the runtime's running containers as they were at start.
  auto running_at_start = std::make_shared<std::set<std::pair<std::string, std::string>>>();
  cm::DeviceManagerDeps dmd;
  dmd.active_pods = [&kubelet_ptr] {
    std::set<std::string> uids;
    if (auto* k = kubelet_ptr.load())
      for (const auto& p : k->ActivePods()) uids.insert(p.metadata.uid);
    return uids;
  };
  dmd.sources_ready = [&kubelet_ptr] {
    auto* k = kubelet_ptr.load();
    return k && k->SourcesReady();
  };
  dmd.container_running = [running_at_start](const std::string& uid, const std::string& container) {
    return running_at_start->count({uid, container}) > 0;
  };
  dmd.on_registration = [&metrics](const std::string& res) { metrics.device_plugin_registration.Add({{"resource_name", res}}).Increment(); };
  dmd.on_allocation = [&metrics](const std::string& res, double secs) {
    metrics.device_plugin_alloc_duration.Add({{"resource_name", res}}, metrics::KubeletMetrics::kPodWorkerBuckets).Observe(secs);
  };
  dmd.affinity = topology_manager.get();
  auto device_manager = cm::NewDeviceManager(dmo, dmd);
  plugin_manager->AddHandler(pluginmanager::kDevicePlugin, device_manager.get());
  auto volumes = volumemanager::NewVolumeManager(flags.root_dir + "/pods", std::move(vdeps));
  // A watched object changed: the volumes of the pods that read it are brought up to date at once.
  if (env_source)
    env_source->SetOnChange([vm = volumes.get()](const std::vector<std::string>& uids) {
      for (const auto& uid : uids) vm->RemountPod(uid);
    });
  std::unique_ptr<network::CNIRunner> cni;
  if (flags.network_plugin == "cni") {
    network::CNIOptions co;
    co.conf_dir = flags.cni_conf_dir;
    co.bin_dirs = flags.cni_bin_dirs;
    co.cache_dir = flags.cni_cache_dir;
    cni = std::make_unique<network::CNIRunner>(co);
    auto ready = cni->Ready();
    logger->info("Pod network attached by the kubelet with CNI confDir=\"{}\" ready={}{}", co.conf_dir, ready.ok(),
                 ready.ok() ? "" : " err=\"" + std::string(ready.message()) + "\"");
  }
  // The cgroup tree: kubepods (node allocatable), the QoS cgroups and one cgroup per pod.
  std::unique_ptr<cm::ContainerManager> container_manager;
  if (cfg.cgroups_per_qos) {
    auto layout = cm::DetectCgroupLayout();
    if (!layout.ok()) {
      logger->error("Failed to start ContainerManager err=\"{}\"", layout.status().message());
      return 1;
    }
    cm::ContainerManagerOptions cmo;
    cmo.cgroup_root = cfg.cgroup_root.empty() ? "/" : cfg.cgroup_root;
    cmo.cgroups_per_qos = cfg.cgroups_per_qos;
    cmo.enforce_node_allocatable = cfg.enforce_node_allocatable;
    cmo.system_reserved_cgroup = cfg.system_reserved_cgroup;
    cmo.kube_reserved_cgroup = cfg.kube_reserved_cgroup;
    cmo.system_reserved = cfg.system_reserved;
    cmo.kube_reserved = cfg.kube_reserved;
    cmo.cpu_cfs_quota = cfg.cpu_cfs_quota;
    cmo.cpu_cfs_quota_period = std::chrono::duration_cast<std::chrono::microseconds>(cfg.cpu_cfs_quota_period);
    cmo.pod_pids_limit = cfg.pod_pids_limit;
    cmo.capacity = {static_cast<int64_t>(sysconf(_SC_NPROCESSORS_ONLN)) * 1000, MachineMemoryBytes(), MachinePidMax()};
    container_manager = std::make_unique<cm::ContainerManager>(
        std::make_unique<cm::CgroupManager>(*layout, cfg.cgroup_driver), cmo);
    logger->info("Creating Container Manager object based on Node Config cgroupRoot=\"{}\" cgroupDriver=\"{}\" "
                 "cgroupVersion={} enforceNodeAllocatable=[{}]",
                 cmo.cgroup_root, cfg.cgroup_driver, layout->version == cm::CgroupVersion::kV2 ? "v2" : "v1",
                 [&] {
                   std::string all;
                   for (const auto& e : cfg.enforce_node_allocatable) all += (all.empty() ? "" : ",") + e;
                   return all;
                 }());
  }
  kuberuntime::RuntimeManagerDeps rmd{remote.get(), remote.get(), volumes.get(), &recorder, &metrics, &clock,
                                      env_source.get(), cni.get()};
  if (auto* cmp = container_manager.get()) rmd.pod_cgroup_parent = [cmp](const api::Pod& pod) { return cmp->PodCgroupParent(pod); };
  // The CPU manager (cpuManagerPolicy); it sees the kubelet's pods once the Kubelet exists.
  std::unique_ptr<cm::CPUManager> cpu_manager;
  {
    cm::CPUManagerOptions cpo;
    cpo.policy = cfg.cpu_manager_policy;
    cpo.reserved_system_cpus = cfg.reserved_system_cpus;
    for (const auto* reserved : {&cfg.system_reserved, &cfg.kube_reserved})
      if (auto it = reserved->find("cpu"); it != reserved->end())
        if (auto q = api::ParseQuantity(it->second); q.ok()) cpo.reserved_milli_cpu += q->MilliValue();
    cpo.state_file = flags.root_dir + "/cpu_manager_state";
    cpo.reconcile_period = cfg.cpu_manager_reconcile_period;
    cpo.numa_nodes = topology_manager->numa().nodes;
    std::error_code ec;
    std::filesystem::create_directories(flags.root_dir, ec);
    cm::CPUManagerDeps cpd;
    cpd.runtime = remote.get();
    cpd.active_pods = [&kubelet_ptr] {
      auto* k = kubelet_ptr.load();
      return k ? k->ActivePods() : std::vector<api::Pod>{};
    };
    cpd.sources_ready = [&kubelet_ptr] {
      auto* k = kubelet_ptr.load();
      return k && k->SourcesReady();
    };
    cpd.affinity = topology_manager.get();
    auto made = cm::CPUManager::New(cm::DiscoverCPUs(), cpo, cpd);
    if (!made.ok()) {
      logger->error("Failed to start ContainerManager err=\"failed to initialize cpu manager: {}\"", made.status().message());
      return 1;
    }
    cpu_manager = std::move(*made);
  }
  if (cpu_manager->policy() == "static") {
    auto* cpm = cpu_manager.get();
    rmd.container_cpuset = [cpm](const api::Pod& pod, const std::string& container) {
      return cpm->ContainerCPUSet(pod.metadata.uid, container);
    };
  }
  rmd.container_devices = [dm = device_manager.get()](const api::Pod& pod, const api::Container& c) {
    return dm->GetDeviceRunContainerOptions(pod, c);
  };
  // RuntimeClasses from the API (their handler goes to RunPodSandbox); standalone, every pod runs on the default one.
  std::unique_ptr<runtimeclass::RuntimeClassInformer> runtime_classes;
  if (api) {
    runtime_classes = std::make_unique<runtimeclass::RuntimeClassInformer>(api.get());
    runtime_classes->Start();
    rmd.runtime_classes = runtime_classes.get();
  }
  auto runtime = kuberuntime::NewRuntimeManager(rmd, rmo);

  std::unique_ptr<status::PodStatusSyncer> syncer;
  std::unique_ptr<nodestatus::NodeStatusManager> node_status;
  std::atomic<eviction::EvictionManager*> eviction_ptr{nullptr};  // set before node status starts
  if (api) {
    syncer = std::make_unique<status::PodStatusSyncer>(api.get());
    nodestatus::NodeOptions no;
    no.node_name = node_name;
    no.node_ip = node_ip;
    no.hostname = node_name;
    no.kubelet_port = cfg.port;
    no.max_pods = cfg.max_pods;
    no.node_labels = cfg.node_labels;
    no.register_with_taints = *api::DecodeTaints(cfg.register_with_taints);  // validated with the config
    no.system_reserved = cfg.system_reserved;
    no.kube_reserved = cfg.kube_reserved;
    no.eviction_hard = cfg.eviction_hard;
    no.root_dir = flags.root_dir;
    no.provider_id = cfg.provider_id;
    no.pod_cidr = cfg.pod_cidr;
    no.register_node = cfg.register_node;
    no.update_frequency = cfg.node_status_update_frequency;
    no.report_frequency = cfg.node_status_report_frequency;
    no.lease_duration_seconds = cfg.node_lease_duration_seconds;
    nodestatus::NodeProviders np;
    auto* rt = runtime.get();
    np.runtime_version = [rt] {
      auto v = rt->Version();
      return v.ok() ? v->runtime_name() + "://" + v->runtime_version() : std::string();
    };
    auto* remote_ptr = remote.get();
    auto* cni_ptr = cni.get();
    np.readiness = [remote_ptr, cni_ptr] { return nodestatus::ReadinessFrom(remote_ptr->Status(), cni_ptr); };
    np.pressure = [&eviction_ptr] {
      auto* em = eviction_ptr.load();
      return em ? em->NodeConditions() : std::vector<std::string>{};
    };
    np.node_event = [logger, api_recorder](const std::string& reason, const std::string& message, const std::string& type) {
      logger->info("Event occurred kind=\"Node\" type=\"{}\" reason=\"{}\" message=\"{}\"", type, reason, message);
      if (api_recorder) api_recorder->NodeEvent(type, reason, message);
    };
    auto* volumes_ptr = volumes.get();
    np.volumes_in_use = [volumes_ptr]() -> std::optional<std::vector<std::string>> {
      if (!volumes_ptr->ReconcilerStatesHasBeenSynced()) return std::nullopt;
      return volumes_ptr->GetVolumesInUse();
    };
    np.extended_resources = [dm = device_manager.get()] {
      auto c = dm->GetCapacity();
      return nodestatus::NodeProviders::ExtendedResources{std::move(c.capacity), std::move(c.allocatable), std::move(c.removed)};
    };
    node_status = std::make_unique<nodestatus::NodeStatusManager>(api.get(), &clock, no, np);
  }

  KubeletOptions ko;
  {
    nodestatus::NodeOptions alloc;
    alloc.system_reserved = cfg.system_reserved;
    alloc.kube_reserved = cfg.kube_reserved;
    alloc.eviction_hard = cfg.eviction_hard;
    alloc.node_name = node_name;
    alloc.hostname = node_name;
    alloc.node_labels = cfg.node_labels;
    std::tie(ko.allocatable_milli_cpu, ko.allocatable_memory) = nodestatus::AllocatableCpuMemory(alloc);
    ko.node_labels = nodestatus::InitialNode(alloc).metadata.labels;
  }
  ko.config = cfg;
  ko.node_name = node_name;
  ko.node_ip = node_ip;
  ko.root_dir = flags.root_dir;
  ko.allow_privileged = flags.allow_privileged;
  auto* ns_ptr = node_status.get();
  late_node_status = ns_ptr;
  std::function<std::string()> node_uid;
  if (ns_ptr) node_uid = [ns_ptr] { return ns_ptr->NodeUID(); };
  Dependencies kd{&clock, runtime.get(), volumes.get(), &recorder, &metrics, api.get(), syncer.get(), node_uid,
                  container_manager.get()};
  if (ns_ptr) kd.node_labels = [ns_ptr] { return ns_ptr->NodeLabels(); };
  if (ns_ptr) kd.refresh_node_labels = [ns_ptr] { return ns_ptr->RefreshNodeLabels(); };
  kd.objects = env_source.get();
  kd.prepare_resources = [dm = device_manager.get()](const api::Pod& pod) { return dm->PrepareDevices(pod); };
  Kubelet kl(ko, kd);

  // Volume usage measured every volumeStatsAggPeriod, each pod on its own thread; served from the cache.
  stats::FsResourceAnalyzerOptions fso;
  fso.period = cfg.volume_stats_agg_period;
  fso.clock = &clock;
  fso.volumes = [vm = volumes.get()] {
    std::vector<stats::VolumeRef> out;
    for (auto& t : vm->StatsTargets())
      out.push_back({t.pod_uid, t.pod_namespace, t.pod_name, t.name, t.pvc_name, t.csi_spec_name});
    return out;
  };
  // Upstream reads a volume's health condition only behind the CSIVolumeHealth gate (alpha, off by default): then
  // it is in /stats/summary and kubelet_volume_stats_health_status_abnormal, and abnormal is a pod event.
  auto health_gate = cfg.feature_gates.find("CSIVolumeHealth");
  const bool volume_health = health_gate != cfg.feature_gates.end() && health_gate->second;
  fso.measure = [&csi_volumes, &clock, volume_health](const stats::VolumeRef& ref) -> absl::StatusOr<stats::VolumeStats> {
    auto u = csi_volumes.VolumeStats(ref.pod_uid, ref.key);
    if (!u.ok()) return u.status();
    auto n = [](int64_t v) { return v < 0 ? uint64_t{0} : static_cast<uint64_t>(v); };
    stats::VolumeStats v;
    v.fs.time = clock.Now();
    v.fs.available_bytes = n(u->available_bytes);
    v.fs.capacity_bytes = n(u->capacity_bytes);
    v.fs.used_bytes = n(u->used_bytes);
    v.fs.inodes = n(u->inodes);
    v.fs.inodes_free = n(u->inodes_free);
    v.fs.inodes_used = n(u->inodes_used);
    if (volume_health && u->has_condition) {
      v.abnormal = u->abnormal;
      v.message = u->condition_message;
    }
    return v;
  };
  if (volume_health)
    fso.abnormal = [&recorder](const stats::VolumeRef& ref, const std::string& message) {
      api::Pod pod;
      pod.metadata.uid = ref.pod_uid;
      pod.metadata.namespace_ = ref.pod_namespace;
      pod.metadata.name = ref.pod_name;
      recorder.PodEvent(pod, "Warning", "VolumeConditionAbnormal", "Volume " + ref.name + ": " + message);
    };
  stats::FsResourceAnalyzer fs_analyzer(std::move(fso));

  stats::ProviderOptions spo;
  spo.pod_volume_stats = [&fs_analyzer](const std::string& uid) { return fs_analyzer.PodVolumeStats(uid); };
  spo.node_name = node_name;
  spo.root_dir = flags.root_dir;
  spo.pod_logs_dir = cfg.pod_logs_dir;
  spo.pods_dir = flags.root_dir + "/pods";
  spo.machine_memory = MachineMemoryBytes();
  stats::StatsProvider stats_provider(remote.get(), remote.get(), container_manager.get(), &clock, spo);
  // TokenReview and SubjectAccessReview get a client of their own: a short deadline and one retry, so an API server
  // that does not answer costs a request seconds (then 401 or 500), never a hang, and pod status writes never wait.
  std::unique_ptr<client::ApiClient> auth_api;
  if (api) {
    client::ClientOptions ao;
    ao.qps = 0;
    ao.timeout = std::chrono::seconds(5);
    ao.max_retries = 1;
    ao.initial_backoff = std::chrono::milliseconds(500);
    auth_api = client::NewApiClient(*rest, ao);
  } else if (ObjectField(cfg.authentication, "webhook").value("enabled", true) ||
             cfg.authorization.value("mode", "Webhook") == "Webhook") {
    logger->warn("No API server to authenticate and authorize requests with: bearer tokens get 401 and Webhook "
                 "authorization denies every request (set authentication.webhook.enabled: false and "
                 "authorization.mode: AlwaysAllow to serve without one)");
  }
  server::KubeletServerOptions so{cfg, flags.cert_dir, node_name, &stats_provider};
  // serverTLSBootstrap: the serving certificate from a kubernetes.io/kubelet-serving CSR, rotated as the client's.
  std::unique_ptr<certificate::Manager> server_certs;
  if (cfg.server_tls_bootstrap && api) {
    certificate::ManagerOptions mo;
    mo.name = "server";
    mo.signer_name = certificate::kKubeletServingSigner;
    mo.subject = [node_name, node_ip] {
      certificate::Subject s{"system:node:" + node_name, {"system:nodes"}, {node_name}, {}};
      if (!node_ip.empty()) s.ip_addresses.push_back(node_ip);
      return s;
    };
    mo.usages = {"digital signature", "server auth"};
    mo.store = std::make_unique<certificate::FileStore>("kubelet-server", flags.cert_dir, cfg.tls_cert_file, cfg.tls_private_key_file);
    mo.clock = &clock;
    // The serving certificate is asked for as the node: not before the node has its client certificate.
    mo.client = [&api, &client_certs](const certificate::KeyPair*) -> client::ApiClient* {
      return client_certs && !client_certs->Current() ? nullptr : api.get();
    };
    mo.on_ttl = [&metrics](double ttl) { metrics.server_cert_ttl.Set(ttl); };
    mo.on_error = [&metrics] { metrics.server_cert_renew_errors.Increment(); };
    mo.on_rotate = [&metrics, &clock](const certificate::KeyPair* previous, const certificate::KeyPair&) {
      if (previous) metrics.server_cert_rotation.Observe(std::chrono::duration<double>(clock.Now() - previous->not_before).count());
    };
    server_certs = std::make_unique<certificate::Manager>(std::move(mo));
    so.serving_certificate = [m = server_certs.get()]() -> std::shared_ptr<const TLSCertificate> { return m->Current(); };
    server_certs->Start();
  } else if (cfg.server_tls_bootstrap) {
    logger->warn("serverTLSBootstrap needs an API server (--kubeconfig): serving a self-signed certificate");
  }
  so.auth_api = auth_api.get();
  so.cri = remote.get();
  so.clock = &clock;
  server::KubeletServer srv(&kl, runtime.get(), &metrics, so);

  // Image GC: the image filesystem's usage between imageGCLowThresholdPercent and imageGCHighThresholdPercent.
  images::ImageGCDeps igd;
  igd.images = remote.get();
  igd.runtime = remote.get();
  igd.clock = &clock;
  igd.image_fs = [&stats_provider]() -> absl::StatusOr<stats::FsStats> {
    auto s = stats_provider.Get();
    if (!s.ok()) return s.status();
    if (!(*s)->node.image_fs) return absl::UnavailableError("the runtime reports no image filesystem");
    return *(*s)->node.image_fs;
  };
  igd.node_event = [logger, api_recorder](const std::string& type, const std::string& reason, const std::string& message) {
    logger->warn("Event occurred kind=\"Node\" type=\"{}\" reason=\"{}\" message=\"{}\"", type, reason, message);
    if (api_recorder) api_recorder->NodeEvent(type, reason, message);
  };
  if (!flags.pod_infra_container_image.empty()) igd.pinned.push_back(flags.pod_infra_container_image);
  images::ImageGCPolicy igp;
  igp.high_threshold_percent = cfg.image_gc_high_threshold_percent;
  igp.low_threshold_percent = cfg.image_gc_low_threshold_percent;
  igp.min_age = cfg.image_minimum_gc_age;
  igp.max_age = cfg.image_maximum_gc_age;
  images::ImageGCManager image_gc(igd, igp);

  // Eviction: evictionHard/evictionSoft over the stats provider's signals.
  auto thresholds = eviction::ParseThresholds(cfg.eviction_hard, cfg.eviction_soft, cfg.eviction_soft_grace_period,
                                              cfg.eviction_minimum_reclaim);
  if (!thresholds.ok()) {
    logger->error("Failed to run kubelet err=\"failed to parse eviction thresholds: {}\"", thresholds.status().message());
    return 1;
  }
  eviction::EvictionOptions eo;
  eo.thresholds = *thresholds;
  // Node allocatable enforced on pods: their cgroup gets a memory threshold of its own, as upstream adds it.
  if (container_manager && std::find(cfg.enforce_node_allocatable.begin(), cfg.enforce_node_allocatable.end(), "pods") !=
                               cfg.enforce_node_allocatable.end()) {
    eviction::AddAllocatableThresholds(&eo.thresholds);
    int64_t hard = 0;
    for (const auto& t : eo.thresholds)
      if (t.hard && t.signal == "memory.available") hard = eviction::ThresholdValue(t, MachineMemoryBytes());
    eo.allocatable_memory = container_manager->AllocatableForCgroups().memory - hard;
  }
  eo.pressure_transition_period = cfg.eviction_pressure_transition_period;
  eo.max_pod_grace_period_seconds = cfg.eviction_max_pod_grace_period;
  eo.local_storage_capacity_isolation = cfg.local_storage_capacity_isolation;
  eviction::EvictionDeps ed;
  ed.summary = [&stats_provider] { return stats_provider.Refresh(); };
  ed.clock = &clock;
  ed.active_pods = [&kl] { return kl.ActivePods(); };
  ed.evict_pod = [&kl](const api::Pod& pod, int64_t grace, const std::string& message) { return kl.EvictPod(pod, grace, message); };
  ed.pod_cleaned_up = [&kl](const std::string& uid) { return kl.PodTornDown(uid); };
  ed.delete_unused_containers = [&kl] { return kl.DeleteUnusedContainers(); };
  ed.delete_unused_images = [&image_gc]() -> absl::Status {
    auto freed = image_gc.DeleteUnusedImages();
    return freed.ok() ? absl::OkStatus() : freed.status();
  };
  ed.on_eviction = [&metrics](const std::string& signal) { metrics.evictions.Add({{"eviction_signal", signal}}).Increment(); };
  eviction::EvictionManager eviction_manager(ed, eo);
  eviction_ptr = &eviction_manager;
  kubelet_ptr = &kl;
  // Upstream's resource allocator is the topology manager: the CPU manager's and the device manager's hints, then
  // their allocations in that order; a refused pod keeps nothing.
  topology_manager->AddHintProvider(cpu_manager.get());
  topology_manager->AddHintProvider(device_manager.get());
  kl.SetAllocateAdmitHandler([tm = topology_manager.get(), cpm = cpu_manager.get(), dm = device_manager.get()](const api::Pod& pod) {
    auto r = tm->Admit(pod);
    if (r.admit) return AdmitResult{};
    dm->RemovePod(pod.metadata.uid);
    cpm->RemovePod(pod.metadata.uid);
    return AdmitResult{false, r.reason, r.message};
  });
  kl.SetExtraAdmitHandler([&eviction_manager](const api::Pod& pod) {
    auto r = eviction_manager.Admit(pod);
    return AdmitResult{r.admit, r.reason, r.message};
  });
  if (auto st = srv.Start(); !st.ok()) {
    logger->error("Failed to start the kubelet servers err=\"{}\"", st.message());
    return 1;
  }

  // The runtime may come up after the kubelet (or restart under it): retry with back-off.
  auto wait = std::chrono::milliseconds(500);
  while (true) {
    auto v = runtime->Version();
    if (v.ok()) {
      logger->info("Container runtime initialized containerRuntime=\"{}\" version=\"{}\" apiVersion=\"{}\"",
                   v->runtime_name(), v->runtime_version(), v->runtime_api_version());
      break;
    }
    logger->error("Container runtime not ready endpoint=\"{}\" err=\"{}\" retryIn=\"{}ms\"", cfg.container_runtime_endpoint,
                  v.status().message(), wait.count());
    if (WaitForSignal(&sigs, wait) > 0) {
      srv.Stop();
      return 0;
    }
    wait = std::min(wait * 2, std::chrono::milliseconds(30000));
  }

  if (container_manager) {
    // The runtime's cgroup driver where it reports it (CRI RuntimeConfig, v1.28+); older runtimes leave the config's.
    std::optional<std::string> runtime_driver;
    if (auto rc = remote->RuntimeConfig(); rc.ok() && rc->has_linux()) {
      runtime_driver = rc->linux().cgroup_driver() == cri::rt::SYSTEMD ? "systemd" : "cgroupfs";
    } else {
      KLOG_V(logger, 2)("Container runtime does not report its cgroup driver, using the configured one cgroupDriver=\"{}\"",
                        cfg.cgroup_driver);
    }
    if (auto st = container_manager->Start(runtime_driver); !st.ok()) {
      logger->error("Failed to start ContainerManager err=\"{}\"", st.message());
      srv.Stop();
      return 1;
    }
  }
  if (api_recorder) api_recorder->NodeEvent("Normal", "Starting", "Starting kubelet.");
  if (node_status) node_status->Start();
  if (syncer) syncer->Start();
  // The device manager reads its checkpoint before the first pod is admitted; the containers running now are
  // the ones a restarted kubelet re-admits without allocating their devices again.
  // What they were created with is on them (kDeviceAllocationAnnotation): allocations the checkpoint lost are rebuilt
  // from it, so their devices are not given to another pod.
  std::vector<cm::RecordedAllocation> recorded_devices;
  {
    cri::rt::ContainerFilter running;
    running.mutable_state()->set_state(cri::rt::CONTAINER_RUNNING);
    if (auto cs = remote->ListContainers(&running); cs.ok())
      for (const auto& c : *cs) {
        auto uid = c.labels().find(kuberuntime::kPodUIDLabel);
        auto name = c.labels().find(kuberuntime::kContainerNameLabel);
        if (uid == c.labels().end() || name == c.labels().end()) continue;
        running_at_start->insert({uid->second, name->second});
        if (auto rec = c.annotations().find(cm::kDeviceAllocationAnnotation); rec != c.annotations().end())
          recorded_devices.push_back({uid->second, name->second, rec->second});
      }
  }
  if (auto st = device_manager->Start(); !st.ok())
    logger->error("Device manager not started; device plugins cannot register err=\"{}\"", st.message());
  device_manager->RestoreFromRuntime(recorded_devices);
  // The pod resources API (node agents read which devices and CPUs went where).
  server::PodResourcesOptions pro;
  pro.socket = flags.root_dir + "/pod-resources/kubelet.sock";
  if (auto g = cfg.feature_gates.find("KubeletPodResourcesGet"); g != cfg.feature_gates.end()) pro.get_enabled = g->second;
  server::PodResourcesProviders prp;
  prp.active_pods = [&kl] { return kl.ActivePods(); };
  prp.pod_devices = [dm = device_manager.get()](const std::string& uid) { return dm->PodDevices(uid); };
  prp.allocatable_devices = [dm = device_manager.get()] { return dm->AllocatableDevices(); };
  if (cpu_manager->policy() == "static") {
    prp.container_cpus = [cpm = cpu_manager.get()](const std::string& uid, const std::string& container) {
      std::vector<int64_t> ids;
      auto all = cpm->Assignments();
      if (auto p = all.find(uid); p != all.end())
        if (auto c = p->second.find(container); c != p->second.end()) ids.assign(c->second.begin(), c->second.end());
      return ids;
    };
    prp.allocatable_cpus = [cpm = cpu_manager.get()] {
      cm::CPUSet cpus = cpm->DefaultSet();
      for (const auto& [uid, containers] : cpm->Assignments())
        for (const auto& [name, set] : containers) cpus.insert(set.begin(), set.end());
      return std::vector<int64_t>(cpus.begin(), cpus.end());
    };
  }
  server::PodResourcesServer pod_resources(pro, prp);
  if (auto st = pod_resources.Start(); !st.ok()) logger->error("Pod resources API not served err=\"{}\"", st.message());
  kl.Start();
  plugin_manager->Start();
  fs_analyzer.Start();
  eviction_manager.Start();
  image_gc.Start();
  cpu_manager->Start();
  // Log rotation by containerLogMaxSize / containerLogMaxFiles (validated with the config).
  std::unique_ptr<kuberuntime::ContainerLogManager> log_manager;
  if (auto max = api::ParseQuantity(cfg.container_log_max_size); max.ok() && max->Value() > 0) {
    kuberuntime::LogRotationOptions lo;
    lo.max_size_bytes = max->Value();
    lo.max_files = cfg.container_log_max_files;
    lo.interval = cfg.container_log_monitor_interval;
    log_manager = std::make_unique<kuberuntime::ContainerLogManager>(remote.get(), &clock, lo);
    log_manager->Start();
  }
  // systemd (Type=notify): ready once the runtime answered, the servers listen and the managers run; with
  // WatchdogSec, WATCHDOG=1 at half its period while the sync loop and PLEG are healthy, so that systemd restarts a
  // wedged kubelet; STOPPING=1 at SIGTERM.
  const auto notifier = util::SystemdNotifier::FromEnvironment();
  if (auto st = notifier.Notify("READY=1"); !st.ok()) logger->error("Failed to notify systemd err=\"{}\"", st.message());
  const auto watchdog = notifier.WatchdogInterval();
  auto last_ping = std::chrono::steady_clock::now();
  bool ping_failing = false, unhealthy_said = false;
  auto tick = watchdog ? std::min(*watchdog, std::chrono::milliseconds(1000)) : std::chrono::milliseconds(1000);
  while (WaitForSignal(&sigs, tick) <= 0) {
    if (!watchdog || std::chrono::steady_clock::now() - last_ping < *watchdog) continue;
    std::string why;
    if (!kl.Healthy(&why)) {
      if (!unhealthy_said) logger->warn("Not pinging the systemd watchdog: the kubelet is not healthy reason=\"{}\"", why);
      unhealthy_said = true;  // said once per spell, not at every tick
      continue;
    }
    unhealthy_said = false;
    // A full socket (a manager that does not read) is said once, not at every ping.
    if (auto st = notifier.Notify("WATCHDOG=1"); !st.ok()) {
      if (!ping_failing) logger->error("Failed to notify systemd err=\"{}\"", st.message());
      ping_failing = true;
    } else {
      ping_failing = false;
    }
    last_ping = std::chrono::steady_clock::now();
  }
  (void)notifier.Notify("STOPPING=1");
  logger->info("Received signal, shutting down the kubelet (pods keep running)");
  // Whatever the API server or the runtime do (a retry loop, a call that waits out its deadline, a plugin that does
  // not answer), a second signal or kForcedExitDeadline ends the process. The pods keep running either way.
  util::ArmForcedExit(sigs, util::kForcedExitDeadline);
  if (log_manager) log_manager->Stop();
  srv.Stop();
  cpu_manager->Stop();
  image_gc.Stop();
  eviction_manager.Stop();
  fs_analyzer.Stop();
  kl.Stop();
  if (runtime_classes) runtime_classes->Stop();
  plugin_manager->Stop();
  pod_resources.Stop();
  device_manager->Stop();
  env_source.reset();  // its watches end before the volume manager they notify
  volumes->Stop();
  if (syncer) syncer->Stop();
  if (node_status) node_status->Stop();
  if (server_certs) server_certs->Stop();
  if (client_certs) client_certs->Stop();
  return 0;
}
