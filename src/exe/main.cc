// kubelet-cpp: the node agent's entry point. Parses flags and the config
// file, connects to the CRI runtime, and runs the kubelet until SIGTERM or
// SIGINT. Stopping the kubelet never stops the pods it runs.
#include <signal.h>

#include <filesystem>
#include <iostream>

#include "kubelet/config/kubelet_config.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/events/recorder.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/server/server.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/node_info.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace {

int WaitForSignal(sigset_t* set, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  return sigtimedwait(set, nullptr, &ts);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kubelet;
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
  if (!flags.kubeconfig.empty())
    logger->warn("--kubeconfig given: the API server source is not available in this build; running standalone kubeconfig=\"{}\"", flags.kubeconfig);

  std::error_code ec;
  for (const auto& dir : {flags.root_dir, flags.root_dir + "/pods", cfg.pod_logs_dir}) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      logger->error("Failed to create directory path=\"{}\" err=\"{}\"", dir, ec.message());
      return 1;
    }
  }

  metrics::KubeletMetrics metrics;
  RealClock clock;
  cri::RemoteOptions ro;
  ro.runtime_endpoint = cfg.container_runtime_endpoint;
  ro.image_endpoint = cfg.image_service_endpoint;
  ro.timeout = cfg.runtime_request_timeout;
  ro.metrics = &metrics;
  auto remote = cri::NewRemoteRuntime(ro);
  auto volumes = volumemanager::NewVolumeManager(flags.root_dir + "/pods");
  events::LoggingRecorder recorder;
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
  auto runtime = kuberuntime::NewRuntimeManager({remote.get(), remote.get(), volumes.get(), &recorder, &metrics, &clock}, rmo);

  KubeletOptions ko;
  ko.config = cfg;
  ko.node_name = node_name;
  ko.node_ip = node_ip;
  ko.root_dir = flags.root_dir;
  Kubelet kl(ko, Dependencies{&clock, runtime.get(), volumes.get(), &recorder, &metrics});

  server::KubeletServer srv(&kl, runtime.get(), &metrics, {cfg, flags.cert_dir, node_name});
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

  kl.Start();
  while (WaitForSignal(&sigs, std::chrono::milliseconds(1000)) <= 0) {
  }
  logger->info("Received signal, shutting down the kubelet (pods keep running)");
  srv.Stop();
  kl.Stop();
  return 0;
}
