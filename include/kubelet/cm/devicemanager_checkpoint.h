#pragma once
// <root-dir>/device-plugins/kubelet_internal_checkpoint in upstream's format (its checkpoint "v2"):
//   {"Data":{"PodDeviceEntries":[{"PodUID","ContainerName","ResourceName","DeviceIDs":{"<numa>":[ids]},
//            "AllocResp":"<base64 ContainerAllocateResponse>"}],"RegisteredDevices":{"<resource>":[ids]}},
//    "Checksum":<n>,"BootID":"..."}
// The checksum is upstream's: FNV-32a over the spew "%#v" rendering of the Data object, so a checkpoint the upstream
// kubelet wrote is read here and the other way round.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace kubelet::cm {

inline constexpr int64_t kNodeWithoutTopology = -1;  // the NUMA key of devices a plugin gave no topology

struct PodDevicesEntry {
  std::string pod_uid, container_name, resource_name;
  std::map<int64_t, std::vector<std::string>> device_ids;  // NUMA node -> device IDs
  std::string alloc_resp;                                  // serialized v1beta1.ContainerAllocateResponse
};

struct DeviceCheckpoint {
  std::vector<PodDevicesEntry> entries;
  std::map<std::string, std::vector<std::string>> registered;  // resource -> healthy device IDs
  std::string boot_id;                                          // empty: written by a kubelet that did not record it
};

/** Upstream's checksum of a checkpoint's "Data" object as it stands in the file (null and empty kept apart). */
absl::StatusOr<uint64_t> DeviceCheckpointChecksum(const nlohmann::json& data);

std::string EncodeDeviceCheckpoint(const DeviceCheckpoint& cp);
/** Parses and verifies a checkpoint; an error names what is wrong ("checkpoint is corrupted" for a checksum mismatch). */
absl::StatusOr<DeviceCheckpoint> DecodeDeviceCheckpoint(const std::string& blob);

}  // namespace kubelet::cm
