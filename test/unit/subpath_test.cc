// subPath safety as upstream's: a subPath never leads out of its volume, whatever symlinks the container (which
// owns the volume's content) planted; missing directories are made without following a symlink; the mount is
// pinned to what was checked.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kubelet/volumemanager/subpath.h"

namespace kubelet::volumemanager {
namespace {

namespace fs = std::filesystem;

class SubpathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("subpath-" + std::to_string(getpid()));
    fs::remove_all(root_);
    volume_ = root_ / "pod/volumes/kubernetes.io~empty-dir/data";
    outside_ = root_ / "host-secret";
    fs::create_directories(volume_);
    fs::create_directories(outside_);
    std::ofstream(outside_ / "shadow") << "root:x";
  }
  void TearDown() override {
    // Undo any bind mount a test made before removing the tree.
    for (int i = 0; i < 4; ++i) ::umount2((root_ / "pod/volume-subpaths/data/c" / std::to_string(i)).c_str(), MNT_DETACH);
    fs::remove_all(root_);
  }
  Subpath Sub(const std::string& sub, int index = 0) {
    Subpath sp;
    sp.volume_mount_index = index;
    sp.path = (volume_ / sub).string();
    sp.volume_name = "data";
    sp.volume_path = volume_.string();
    sp.pod_dir = (root_ / "pod").string();
    sp.container_name = "c";
    return sp;
  }
  fs::path root_, volume_, outside_;
};

TEST_F(SubpathTest, PathsAreRelativeWithoutBacksteps) {
  EXPECT_TRUE(ValidateSubPath("a/b").ok());
  EXPECT_TRUE(ValidateSubPath("a..b/c").ok());
  EXPECT_EQ(ValidateSubPath("/etc").message(), "error SubPath `/etc` must not be an absolute path");
  EXPECT_EQ(ValidateSubPath("a/../../etc").message(), "unable to provision SubPath `a/../../etc`: must not contain '..'");
  EXPECT_TRUE(PathWithinBase("/v/a", "/v"));
  EXPECT_TRUE(PathWithinBase("/v", "/v"));
  EXPECT_FALSE(PathWithinBase("/vx", "/v"));
  EXPECT_FALSE(PathWithinBase("/", "/v"));
}

TEST_F(SubpathTest, SafeMakeDirCreatesInsideAndRefusesASymlinkOut) {
  ASSERT_TRUE(SafeMakeDir("logs/today", volume_.string(), 0750).ok());
  struct stat st {};
  ASSERT_EQ(::stat((volume_ / "logs/today").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  // The container planted a symlink to the host: nothing is created through it.
  fs::create_directory_symlink(outside_, volume_ / "escape");
  auto st1 = SafeMakeDir("escape/new", volume_.string(), 0755);
  EXPECT_FALSE(st1.ok());
  EXPECT_NE(st1.message().find("is outside of allowed base"), std::string::npos) << st1;
  EXPECT_FALSE(fs::exists(outside_ / "new"));
  // A symlink that stays inside the volume is followed once and then walked without following anything.
  fs::create_directory_symlink(volume_ / "logs", volume_ / "inside");
  EXPECT_TRUE(SafeMakeDir("inside/more", volume_.string(), 0755).ok());
  EXPECT_TRUE(fs::is_directory(volume_ / "logs/more"));
}

TEST_F(SubpathTest, ASubpathThatLeavesItsVolumeIsRefused) {
  fs::create_directory_symlink(outside_, volume_ / "escape");
  auto r = PrepareSafeSubpath(Sub("escape"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not within volume path"), std::string::npos) << r.status();
  fs::create_symlink(outside_ / "shadow", volume_ / "file-escape");
  EXPECT_FALSE(PrepareSafeSubpath(Sub("file-escape", 1)).ok());
  fs::create_symlink("../../../../host-secret", volume_ / "relative-escape");
  EXPECT_FALSE(PrepareSafeSubpath(Sub("relative-escape", 2)).ok());
  EXPECT_FALSE(fs::exists(root_ / "pod/volume-subpaths/data/c/0"));
}

TEST_F(SubpathTest, TheMountIsPinnedToWhatWasCheckedAndReused) {
  if (::geteuid() != 0) GTEST_SKIP() << "bind mounts need root";
  fs::create_directories(volume_ / "app/conf");
  std::ofstream(volume_ / "app/conf/x") << "inside";
  auto r = PrepareSafeSubpath(Sub("app/conf"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (root_ / "pod/volume-subpaths/data/c/0").string());
  std::ifstream in(*r + "/x");
  std::string got;
  in >> got;
  EXPECT_EQ(got, "inside");
  // Swapping the checked directory for a symlink to the host afterwards changes nothing that is mounted.
  fs::rename(volume_ / "app/conf", volume_ / "app/old");
  fs::create_directory_symlink(outside_, volume_ / "app/conf");
  EXPECT_FALSE(fs::exists(fs::path(*r) / "shadow"));
  // The container's next instance reuses the mount.
  auto again = PrepareSafeSubpath(Sub("app/old"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *r);
  // A file subPath is mounted on a file.
  std::ofstream(volume_ / "single") << "one";
  auto file = PrepareSafeSubpath(Sub("single", 1));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(fs::is_regular_file(*file));
}

}  // namespace
}  // namespace kubelet::volumemanager
