#pragma once
// The in-process kubelet the fake-runtime benchmarks drive: the real sync loop, pod workers and runtime manager
// over the CRI client, talking to a fake runtime at `endpoint`, with a static pod directory as its one source.
#include <filesystem>
#include <memory>
#include <string>

#include "kubelet/cri/runtime_service.h"
#include "kubelet/events/recorder.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/util/clock.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace kubelet::bench {

struct BenchKubelet {
  BenchKubelet(const std::string& endpoint, const std::filesystem::path& dir) {
    cri::RemoteOptions ro;
    ro.runtime_endpoint = endpoint;
    ro.metrics = &metrics;
    remote = cri::NewRemoteRuntime(ro);
    volumes = volumemanager::NewVolumeManager((dir / "root/pods").string());
    kuberuntime::RuntimeManagerOptions rmo;
    rmo.pod_logs_dir = (dir / "logs").string();
    rmo.pods_dir = (dir / "root/pods").string();
    runtime = kuberuntime::NewRuntimeManager({remote.get(), remote.get(), volumes.get(), &recorder, &metrics, &clock}, rmo);
    KubeletOptions o;
    o.node_name = "bench";
    o.root_dir = (dir / "root").string();
    o.config.static_pod_path = (dir / "manifests").string();
    o.config.pod_logs_dir = (dir / "logs").string();
    kubelet = std::make_unique<Kubelet>(o, Dependencies{&clock, runtime.get(), volumes.get(), &recorder, &metrics});
  }
  metrics::KubeletMetrics metrics;
  RealClock clock;
  events::LoggingRecorder recorder;
  std::unique_ptr<cri::RemoteRuntime> remote;
  std::unique_ptr<volumemanager::VolumeManager> volumes;
  std::unique_ptr<kuberuntime::RuntimeManager> runtime;
  std::unique_ptr<Kubelet> kubelet;
};

}  // namespace kubelet::bench
