#pragma once
// Upstream's pluginmanager: plugins (CSI drivers' node-driver-registrar, device plugins) announce
// themselves by creating a unix socket under <root-dir>/plugins_registry that serves the
// pluginregistration.Registration API. The manager watches the folder (inotify, plus a rescan each
// reconcile period), keeps a desired state (the sockets there) and an actual state (the plugins
// registered), and a reconciler registers what is new or was re-created (GetInfo, the handler of the
// plugin's type validates and registers it, NotifyRegistrationStatus tells the plugin) and
// deregisters what went away or stopped answering. Each registration runs on its own operation
// thread with back-off, so one plugin that hangs holds back no other.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <absl/status/status.h>

namespace kubelet::pluginmanager {

inline constexpr char kCSIPlugin[] = "CSIPlugin";
inline constexpr char kDevicePlugin[] = "DevicePlugin";

/** What a plugin type's manager (the CSI driver store, the device manager) does with plugins of its type. */
class PluginHandler {
 public:
  virtual ~PluginHandler() = default;
  /** Refuses a plugin it cannot serve (a name taken, no version it speaks); the error goes back to the plugin. */
  virtual absl::Status ValidatePlugin(const std::string& name, const std::string& endpoint,
                                      const std::vector<std::string>& versions) = 0;
  /** Takes the plugin into use; `timeout` bounds the calls it makes to the plugin. */
  virtual absl::Status RegisterPlugin(const std::string& name, const std::string& endpoint,
                                      const std::vector<std::string>& versions, std::chrono::milliseconds timeout) = 0;
  /** The plugin's socket went away or it stopped answering. */
  virtual void DeRegisterPlugin(const std::string& name, const std::string& endpoint) = 0;
};

struct PluginManagerOptions {
  std::string dir;                                       // <root-dir>/plugins_registry
  std::chrono::milliseconds reconcile_period{1000};      // upstream's loopSleepDuration
  std::chrono::milliseconds call_timeout{10000};         // dial + GetInfo + NotifyRegistrationStatus
  std::chrono::milliseconds health_period{10000};        // GetInfo of each registered plugin
  int health_failures = 3;                               // consecutive failures before it is deregistered
};

/** A registered plugin, as the actual state holds it. */
struct RegisteredPlugin {
  std::string socket;
  std::string type;
  std::string name;
  std::string endpoint;
  std::vector<std::string> versions;
};

class PluginManager {
 public:
  virtual ~PluginManager() = default;
  /** Before Start: the handler of a plugin type ("CSIPlugin", "DevicePlugin"); not owned. */
  virtual void AddHandler(const std::string& type, PluginHandler* handler) = 0;
  virtual void Start() = 0;
  /** Stops watching; plugins stay registered with their handlers (the kubelet is going away). */
  virtual void Stop() = 0;
  virtual std::vector<RegisteredPlugin> Registered() const = 0;
};

std::unique_ptr<PluginManager> NewPluginManager(PluginManagerOptions options);

}  // namespace kubelet::pluginmanager
