#pragma once
// Upstream's device manager (pkg/kubelet/cm/devicemanager), its registration and inventory half: the
// Registration service on <root-dir>/device-plugins/kubelet.sock (deviceplugin v1beta1), registrations
// arriving through the plugin manager (type DevicePlugin), one ListAndWatch stream per plugin kept open on a
// thread of its own, and the extended resources it makes: capacity (every device), allocatable (the healthy
// ones). A plugin whose stream ends has its devices counted unhealthy at once and, after the grace period
// (upstream's 5 minutes), its resource is reported with capacity 0 and then forgotten.
//
// Allocation, in two steps so that the sync loop never waits on a plugin: Admit (at admission, on the loop) checks
// and sets aside the devices each container needs, in upstream's order (init containers first, their devices reused
// by the containers after them, sidecars keeping theirs), from the NUMA nodes of the container's topology affinity
// first; PrepareDevices (on the pod's own worker, before anything of the pod is created) picks the devices among those
// no other pod has set aside, as upstream's devicesToAllocate does (aligned ones first, GetPreferredAllocation when the
// plugin offers it), calls Allocate per container and resource, and checkpoints. As a topology manager hint provider
// it offers, per container or per pod, the NUMA node sets whose free devices could serve the request. A failed Allocate releases everything of the pod and the pod
// is rejected with the plugin's message. GetDeviceRunContainerOptions gives what the container is created with
// (PreStartContainer first when the plugin asks for it). Devices of pods that are no longer active go back to the
// pool. The checkpoint (upstream's format and checksum) is read at Start: a restarted kubelet keeps its running
// pods' devices and re-admits them without allocating again. When the checkpoint is lost, what the running containers
// were created with (kDeviceAllocationAnnotation) rebuilds their allocations (RestoreFromRuntime).
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <functional>
#include <set>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "kubelet/api/types.h"
#include "kubelet/cm/device_run_options.h"
#include "kubelet/cm/topologymanager.h"
#include "kubelet/pluginmanager/plugin_manager.h"

namespace kubelet::cm {

inline constexpr char kDevicePluginVersion[] = "v1beta1";
inline constexpr char kKubeletSocket[] = "kubelet.sock";
inline constexpr char kDeviceCheckpoint[] = "kubelet_internal_checkpoint";
/** The container annotation that records, in the checkpoint's own format (checksum and boot ID included), the devices
 *  a container was created with: a kubelet whose checkpoint is lost or corrupted rebuilds its allocations from the
 *  running containers, so devices they hold are not given again. */
inline constexpr char kDeviceAllocationAnnotation[] = "kubelet-cpp.io/device-allocation";

/** What a running container was created with: its pod, its name and its kDeviceAllocationAnnotation. */
struct RecordedAllocation {
  std::string pod_uid;
  std::string container_name;
  std::string annotation;
};

struct DeviceManagerOptions {
  std::string socket_dir;  // <root-dir>/device-plugins
  std::chrono::milliseconds stop_grace{5 * 60 * 1000};  // upstream's endpointStopGracePeriod
  std::chrono::milliseconds dial_timeout{10000};
  // Allocate, GetPreferredAllocation, PreStartContainer (upstream's KubeletPreStartContainerRPCTimeoutInSecs).
  std::chrono::milliseconds rpc_timeout{30000};
  std::string boot_id_file = "/proc/sys/kernel/random/boot_id";
  std::vector<int> numa_nodes = {0};  // the machine's NUMA nodes, for topology hints
};

struct DeviceManagerDeps {
  std::function<std::set<std::string>()> active_pods;  // UIDs of the pods still active
  std::function<bool()> sources_ready;                  // every pod source has spoken (a restart is over)
  std::function<bool(const std::string& uid, const std::string& container)> container_running;
  std::function<void(const std::string& resource)> on_registration;                 // kubelet_device_plugin_registration_total
  std::function<void(const std::string& resource, double seconds)> on_allocation;  // kubelet_device_plugin_alloc_duration_seconds
  const AffinityStore* affinity = nullptr;  // the topology manager: the NUMA nodes a container's devices come from first
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

/** A ListAndWatch reply's devices as the manager keeps them (bounded; a device without an ID or seen twice skipped). */
std::vector<PluginDevice> DevicesFromListAndWatch(const std::string& resource, const std::string& serialized_reply);
/** Adds a stored Allocate answer (a serialized ContainerAllocateResponse) to a container's options, the first to set
 *  a name winning; false when it does not parse. */
bool MergeAllocateResponse(const std::string& serialized, DeviceRunContainerOptions* out);

/** Whether `name` is an extended resource name a device plugin may register (upstream's IsExtendedResourceName). */
bool IsExtendedResourceName(const std::string& name);

class DeviceManager : public pluginmanager::PluginHandler, public HintProvider {
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
                                            const std::string& resource_name, bool pre_start_required = false,
                                            bool get_preferred_allocation_available = false) = 0;

  /** Admission (the sync loop): checks and reserves the pod's devices; no plugin is called. The same, one container
   *  at a time in the pod's order, is the HintProvider's Allocate (the topology manager calls it after the hints). */
  virtual absl::Status Admit(const api::Pod& pod) = 0;
  /** The pod's worker: allocates what Admit reserved (plugin calls, bounded); idempotent, fast once done. */
  virtual absl::Status PrepareDevices(const api::Pod& pod) = 0;
  /** What the container is created with; PreStartContainer first where the plugin asks for it. */
  virtual absl::StatusOr<DeviceRunContainerOptions> GetDeviceRunContainerOptions(const api::Pod& pod, const api::Container& c) = 0;
  /** After Start, before the first admission: the running containers' kDeviceAllocationAnnotation restore what the
   *  checkpoint did not hold for them (entries of other containers, of another boot, that do not decode, or that name
   *  a device another container holds are skipped with a log line naming the container); the checkpoint is written
   *  once. Returns how many allocations were restored. */
  virtual int RestoreFromRuntime(const std::vector<RecordedAllocation>& recorded) = 0;
  /** Drops the pod's reservation and devices (a pod refused after Admit by a later admission check). */
  virtual void RemovePod(const std::string& uid) = 0;
  /** container -> the devices it holds, a set per resource and NUMA node (the pod resources API's shape). */
  virtual std::map<std::string, std::vector<ContainerDeviceSet>> PodDevices(const std::string& uid) const = 0;
  /** Every registered device, a set per device and NUMA node (GetAllocatableResources). */
  virtual std::vector<ContainerDeviceSet> AllocatableDevices() const = 0;
};

std::unique_ptr<DeviceManager> NewDeviceManager(DeviceManagerOptions o, DeviceManagerDeps d = {});

}  // namespace kubelet::cm
