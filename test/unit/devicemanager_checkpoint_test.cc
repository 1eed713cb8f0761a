// The device manager's checkpoint against files the upstream kubelet wrote (their checksums computed by it).
#include <gtest/gtest.h>

#include "kubelet/cm/devicemanager_checkpoint.h"

namespace kubelet::cm {
namespace {

// Two checkpoints an upstream kubelet wrote on real nodes (a GPU pod's allocation; a node with no pod entries).
const char kUpstreamWithPod[] =
    R"({"Data":{"PodDeviceEntries":[{"PodUID":"bf52b2cd-b611-4e79-86b1-280b283185c3","ContainerName":"check",)"
    R"("ResourceName":"nvidia.com/gpu","DeviceIDs":{"-1":["tegra"]},"AllocResp":"Ch8KFk5WSURJQV9WSVNJQkxFX0RFVklDRVMSBXRlZ3Jh"}],)"
    R"("RegisteredDevices":{"nvidia.com/gpu":["tegra"]}},"Checksum":3660592824})";
const char kUpstreamNoPods[] =
    R"({"Data":{"PodDeviceEntries":null,"RegisteredDevices":{"nvidia.com/gpu":["GPU-0650a168-e770-3ea8-8ac3-8a1d419763e0"]}},)"
    R"("Checksum":3952659280})";

TEST(DeviceCheckpoint, ReadsWhatUpstreamWrote) {
  auto cp = DecodeDeviceCheckpoint(kUpstreamWithPod);
  ASSERT_TRUE(cp.ok()) << cp.status();
  ASSERT_EQ(cp->entries.size(), 1u);
  EXPECT_EQ(cp->entries[0].pod_uid, "bf52b2cd-b611-4e79-86b1-280b283185c3");
  EXPECT_EQ(cp->entries[0].container_name, "check");
  EXPECT_EQ(cp->entries[0].resource_name, "nvidia.com/gpu");
  EXPECT_EQ(cp->entries[0].device_ids.at(kNodeWithoutTopology), std::vector<std::string>{"tegra"});
  // The stored Allocate answer: envs {NVIDIA_VISIBLE_DEVICES: tegra}, proto-encoded.
  EXPECT_NE(cp->entries[0].alloc_resp.find("NVIDIA_VISIBLE_DEVICES"), std::string::npos);
  EXPECT_EQ(cp->registered.at("nvidia.com/gpu"), std::vector<std::string>{"tegra"});

  auto none = DecodeDeviceCheckpoint(kUpstreamNoPods);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->entries.empty());
  EXPECT_EQ(none->registered.size(), 1u);
}

TEST(DeviceCheckpoint, RefusesAChangedOrMalformedFile) {
  std::string changed = kUpstreamWithPod;
  changed.replace(changed.find("tegra"), 5, "tegrb");  // the device list, not the checksum
  auto cp = DecodeDeviceCheckpoint(changed);
  EXPECT_EQ(cp.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(cp.status().message(), "checkpoint is corrupted");
  for (const char* bad : {"", "{", "[]", R"({"Checksum":1})", R"({"Data":[],"Checksum":1})",
                          R"({"Data":{"PodDeviceEntries":[{"DeviceIDs":{"x":["a"]}}]},"Checksum":1})",
                          R"({"Data":{"PodDeviceEntries":[{"AllocResp":"!!"}]},"Checksum":1})",
                          R"({"Data":{"RegisteredDevices":{"r":[1]}},"Checksum":1})"}) {
    auto r = DecodeDeviceCheckpoint(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
}

TEST(DeviceCheckpoint, WritesWhatItReadsAndUpstreamsChecksum) {
  DeviceCheckpoint cp;
  cp.entries.push_back({"uid-1", "app", "example.com/dev", {{0, {"dev-0"}}, {1, {"dev-1"}}}, std::string("\x0a\x03\x61\x62\x63", 5)});
  cp.registered["example.com/dev"] = {"dev-0", "dev-1"};
  cp.registered["example.com/none"] = {};
  cp.boot_id = "b00t";
  std::string blob = EncodeDeviceCheckpoint(cp);
  auto back = DecodeDeviceCheckpoint(blob);
  ASSERT_TRUE(back.ok()) << back.status() << " " << blob;
  ASSERT_EQ(back->entries.size(), 1u);
  EXPECT_EQ(back->entries[0].device_ids, cp.entries[0].device_ids);
  EXPECT_EQ(back->entries[0].alloc_resp, cp.entries[0].alloc_resp);
  EXPECT_EQ(back->registered, cp.registered);
  EXPECT_EQ(back->boot_id, "b00t");
  // Re-encoding upstream's own file gives its checksum back.
  auto up = DecodeDeviceCheckpoint(kUpstreamWithPod);
  ASSERT_TRUE(up.ok());
  EXPECT_NE(EncodeDeviceCheckpoint(*up).find("\"Checksum\":3660592824"), std::string::npos);
  // No entries are written as upstream writes them (null), which hashes as upstream's nil slice.
  DeviceCheckpoint empty;
  empty.registered["nvidia.com/gpu"] = {"GPU-0650a168-e770-3ea8-8ac3-8a1d419763e0"};
  EXPECT_NE(EncodeDeviceCheckpoint(empty).find("\"Checksum\":3952659280"), std::string::npos) << EncodeDeviceCheckpoint(empty);
}

}  // namespace
}  // namespace kubelet::cm
