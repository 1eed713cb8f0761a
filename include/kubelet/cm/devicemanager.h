#pragma once
// Upstream's device manager (pkg/kubelet/cm/devicemanager), its registration and inventory half: the
// Registration service on <root-dir>/device-plugins/kubelet.sock (deviceplugin v1beta1), registrations
// arriving through the plugin manager (type DevicePlugin), one ListAndWatch stream per plugin kept open on a
// thread of its own, and the extended resources it makes: capacity (every device), allocatable (the healthy
// ones). A plugin whose stream ends has its devices counted unhealthy at once and, after the grace period
// (upstream's 5 minutes), its resource is reported with capacity 0 and then forgotten.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>

#include "kubelet/pluginmanager/plugin_manager.h"

namespace kubelet::cm {

inline constexpr char kDevicePluginVersion[] = "v1beta1";
inline constexpr char kKubeletSocket[] = "kubelet.sock";
inline constexpr char kDeviceCheckpoint[] = "kubelet_internal_checkpoint";

struct DeviceManagerOptions {
  std::string socket_dir;  // <root-dir>/device-plugins
  std::chrono::milliseconds stop_grace{5 * 60 * 1000};  // upstream's endpointStopGracePeriod
  std::chrono::milliseconds dial_timeout{10000};
};

/** A plugin's devices as its last ListAndWatch said. */
struct PluginDevice {
  std::string id;
  bool healthy = false;
  std::vector<int64_t> numa_nodes;
};

struct DeviceCapacity {
  std::map<std::string, int64_t> capacity;     // resource -> all devices
  std::map<std::string, int64_t> allocatable;  // resource -> healthy devices
  std::vector<std::string> removed;            // resources whose plugin is gone past the grace period
};

/** Whether `name` is an extended resource name a device plugin may register (upstream's IsExtendedResourceName). */
bool IsExtendedResourceName(const std::string& name);

class DeviceManager : public pluginmanager::PluginHandler {
 public:
  ~DeviceManager() override = default;
  /** Removes stale sockets from the folder (keeping the checkpoint) and serves kubelet.sock. */
  virtual absl::Status Start() = 0;
  virtual void Stop() = 0;
  /** The extended resources for the node's status; `removed` ones are reported once with capacity 0. */
  virtual DeviceCapacity GetCapacity() = 0;
  /** resource -> its devices (for the tests and the pod resources API). */
  virtual std::map<std::string, std::vector<PluginDevice>> Devices() const = 0;
  /** Registers a plugin as the Registration service does (also what Register on kubelet.sock calls). */
  virtual absl::Status RegisterDevicePlugin(const std::string& version, const std::string& endpoint,
                                            const std::string& resource_name) = 0;
};

std::unique_ptr<DeviceManager> NewDeviceManager(DeviceManagerOptions o);

}  // namespace kubelet::cm
