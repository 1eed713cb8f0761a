// emptyDir volumes with an fsGroup: the group owns the volume, can write it,
// and new files inherit the group (setgid), as upstream's SetVolumeOwnership.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kubelet/api/codec.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace kubelet::volumemanager {
namespace {

TEST(EmptyDir, FSGroupOwnsTheVolume) {
  auto dir = std::filesystem::temp_directory_path() / ("vol-test-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  auto vm = NewVolumeManager(dir.string());
  nlohmann::json j = nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","uid":"u1"},
    "spec":{"securityContext":{"fsGroup":2345},"volumes":[{"name":"data","emptyDir":{}},{"name":"plain","emptyDir":{}}],
            "containers":[{"name":"c","image":"x:1"}]}})");
  api::ApplyPodDefaults(j);
  auto pod = *api::DecodePod(j);
  // Content that was there before the volume was set up (as after a kubelet restart) is fixed too.
  auto data = dir / "u1" / "volumes" / "kubernetes.io~empty-dir" / "data";
  std::filesystem::create_directories(data / "sub");
  std::ofstream(data / "sub" / "old.txt") << "x";
  ::chmod((data / "sub" / "old.txt").c_str(), 0600);
  auto mounts = vm->WaitForAttachAndMount(pod);
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  struct stat st {};
  ASSERT_EQ(::stat(mounts->at("data").path.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 2345u);
  EXPECT_TRUE(st.st_mode & S_ISGID);
  EXPECT_EQ(st.st_mode & S_IRWXG, static_cast<mode_t>(S_IRWXG));
  ASSERT_EQ(::stat((data / "sub" / "old.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 2345u);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  ASSERT_EQ(::stat((data / "sub").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_ISGID);
  // A pod without fsGroup leaves ownership alone.
  j["spec"].erase("securityContext");
  j["metadata"]["uid"] = "u2";
  auto plain = vm->WaitForAttachAndMount(*api::DecodePod(j));
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(::stat(plain->at("data").path.c_str(), &st), 0);
  EXPECT_FALSE(st.st_mode & S_ISGID);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kubelet::volumemanager
