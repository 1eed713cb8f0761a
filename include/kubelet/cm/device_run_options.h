#pragma once
// What a container gets from the device plugins that allocated its devices (upstream's DeviceRunContainerOptions):
// environment, mounts, device nodes, annotations and CDI device names, merged over its resources.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kubelet::cm {

struct DeviceMount {
  std::string container_path, host_path;
  bool read_only = false;
};

struct DeviceNode {
  std::string container_path, host_path, permissions;
};

struct DeviceRunContainerOptions {
  std::vector<std::pair<std::string, std::string>> envs;
  std::vector<DeviceMount> mounts;
  std::vector<DeviceNode> devices;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> cdi_devices;
  bool empty() const { return envs.empty() && mounts.empty() && devices.empty() && annotations.empty() && cdi_devices.empty(); }
};

/** Devices of one resource on one NUMA node (none listed: the plugin gave no topology). */
struct ContainerDeviceSet {
  std::string resource;
  std::vector<std::string> ids;
  std::vector<int64_t> numa_nodes;
};

}  // namespace kubelet::cm
