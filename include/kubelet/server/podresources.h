#pragma once
// The pod resources API (upstream's pkg/kubelet/apis/podresources, v1): <root-dir>/pod-resources/kubelet.sock
// serving v1.PodResourcesLister to node agents (GPU exporters, topology-aware schedulers' agents): List (every
// active pod, its containers and sidecars with their devices by resource and NUMA node, exclusive CPUs),
// GetAllocatableResources, and Get (one pod; behind the KubeletPodResourcesGet gate as upstream). Rate-limited as
// upstream (100 QPS, burst 10): past it, ResourceExhausted "rejected by rate limit".
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>

#include "kubelet/api/types.h"
#include "kubelet/cm/device_run_options.h"

namespace kubelet::server {

using cm::ContainerDeviceSet;

struct PodResourcesProviders {
  std::function<std::vector<api::Pod>()> active_pods;
  // uid -> container -> its devices.
  std::function<std::map<std::string, std::vector<ContainerDeviceSet>>(const std::string& uid)> pod_devices;
  // Every device the plugins registered, one set per device and NUMA node.
  std::function<std::vector<ContainerDeviceSet>()> allocatable_devices;
  std::function<std::vector<int64_t>(const std::string& uid, const std::string& container)> container_cpus;
  std::function<std::vector<int64_t>()> allocatable_cpus;
};

struct PodResourcesOptions {
  std::string socket;  // <root-dir>/pod-resources/kubelet.sock
  bool get_enabled = false;  // the KubeletPodResourcesGet feature gate
  double qps = 100;
  int burst = 10;
};

class PodResourcesServer {
 public:
  PodResourcesServer(PodResourcesOptions o, PodResourcesProviders p);
  ~PodResourcesServer();
  absl::Status Start();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kubelet::server
