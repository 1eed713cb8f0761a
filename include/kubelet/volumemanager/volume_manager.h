#pragma once
// Prepares the volumes a pod's containers mount and tears them down when the
// pod goes. This first version handles the node-local kinds (hostPath,
// emptyDir); the CSI, configMap, secret and projected kinds plug in here.
#include <map>
#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "kubelet/api/types.h"

namespace kubelet::volumemanager {

class VolumeManager {
 public:
  virtual ~VolumeManager() = default;
  /** Makes every volume of the pod ready; returns volume name -> host path. */
  virtual absl::StatusOr<std::map<std::string, std::string>> MountVolumesForPod(const api::Pod& pod) = 0;
  /** Unmounts and removes what MountVolumesForPod made for this pod UID. */
  virtual absl::Status UnmountVolumesForPod(const std::string& uid) = 0;
};

/** pods_dir is <root-dir>/pods. */
std::unique_ptr<VolumeManager> NewVolumeManager(const std::string& pods_dir);

}  // namespace kubelet::volumemanager
