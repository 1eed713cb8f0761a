// The mount table reader (mountinfo as the kernel writes it) and MakeRShared on real mounts.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kubelet/util/mount.h"

namespace kubelet::mount {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTable =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "30 22 0:26 / /var/lib/kubelet rw,relatime master:7 - ext4 /dev/sdb1 rw\n"
    "31 30 0:27 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/my\\040creds rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k\n"
    "this line is not a mount\n"
    "32 30 0:28 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/mem rw - tmpfs tmpfs rw\n"
    "33 30 0:29 / /var/lib/kubelet/pods/u10/volumes/kubernetes.io~empty-dir/mem rw - tmpfs tmpfs rw\n"
    "34 30 0:28 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/mem rw - tmpfs tmpfs rw\n"
    "35 22 0:30 /sub /data ro,nosuid unbindable propagate_from:3 - cgroup cgroup rw,memory\n";

class MountTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = (fs::temp_directory_path() / ("mountinfo-" + std::to_string(getpid()))).string();
    std::ofstream(file_) << kTable;
  }
  void TearDown() override { fs::remove(file_); }
  std::string file_;
};

TEST_F(MountTableTest, ParsesFieldsOptionalFieldsAndEscapes) {
  auto infos = ParseMountInfo(kTable);
  ASSERT_EQ(infos.size(), 7u) << "the malformed line is skipped, the rest kept";
  EXPECT_EQ(infos[0].id, 22);
  EXPECT_EQ(infos[0].parent_id, 1);
  EXPECT_EQ(infos[0].mount_point, "/");
  EXPECT_EQ(infos[0].optional_fields, std::vector<std::string>{"shared:1"});
  EXPECT_EQ(infos[0].fs_type, "ext4");
  EXPECT_EQ(infos[0].source, "/dev/sda1");
  EXPECT_EQ(infos[2].mount_point, "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/my creds");
  EXPECT_EQ(infos[2].options, (std::vector<std::string>{"rw", "nosuid", "nodev"}));
  EXPECT_EQ(infos[6].root, "/sub");
  EXPECT_EQ(infos[6].optional_fields, (std::vector<std::string>{"unbindable", "propagate_from:3"}));
  EXPECT_EQ(infos[6].super_options, (std::vector<std::string>{"rw", "memory"}));
}

TEST_F(MountTableTest, TruncatedAndOddLinesNeverBreakTheParser) {
  EXPECT_TRUE(ParseMountInfo("").empty());
  EXPECT_TRUE(ParseMountInfo("22 1 8:1 / / rw -").empty()) << "no filesystem type after the separator";
  EXPECT_TRUE(ParseMountInfo("x 1 8:1 / / rw - ext4 a b\n").empty()) << "a mount id that is not a number";
  auto one = ParseMountInfo("22 1 8:1 / /a\\04 rw - ext4");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].mount_point, "/a\\04") << "an incomplete escape is kept as written";
  EXPECT_TRUE(one[0].source.empty());
}

TEST_F(MountTableTest, MountPointsUnderAPodFolderDeepestFirstOnce) {
  EXPECT_TRUE(IsMountPoint("/var/lib/kubelet", file_));
  EXPECT_FALSE(IsMountPoint("/var/lib/kubelet/pods", file_));
  auto under = MountsUnder("/var/lib/kubelet/pods/u1", file_);
  EXPECT_EQ(under, (std::vector<std::string>{"/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/my creds",
                                             "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/mem"}))
      << "u10 is not under u1, and a mount stacked twice is listed once";
  EXPECT_TRUE(MountsUnder("/nowhere", file_).empty());
  EXPECT_TRUE(MountsUnder("/var/lib/kubelet", "/no/such/mountinfo").empty());
}

TEST_F(MountTableTest, FindsTheMountAPathResidesOn) {
  auto m = FindMountInfo("/var/lib/kubelet/pods/u2/volumes", file_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->mount_point, "/var/lib/kubelet");
  EXPECT_EQ(m->optional_fields, std::vector<std::string>{"master:7"});
  auto top = FindMountInfo("/var/lib/kubeletx", file_);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->mount_point, "/") << "a sibling with the same prefix is not inside";
  EXPECT_FALSE(FindMountInfo("/x", "/no/such/mountinfo").ok());
}

// MakeRShared on this machine's real mount table (root only): a folder on a mount that is not shared is bound
// onto itself and made shared; a second call stacks nothing; a folder already on a shared mount is left alone.
TEST(MakeRSharedTest, BindsAFolderOntoItselfOnceAndMakesItShared) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  fs::path dir = fs::weakly_canonical(fs::temp_directory_path()) / ("rshared-" + std::to_string(getpid()));
  fs::create_directories(dir / "root");
  const std::string root = (dir / "root").string();
  // A private tmpfs of its own, so the test does not depend on how this machine's / propagates.
  ASSERT_EQ(::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m"), 0);
  ASSERT_EQ(::mount(nullptr, dir.c_str(), nullptr, MS_PRIVATE, nullptr), 0);
  fs::create_directories(dir / "root/pods");
  auto count = [&] {
    int n = 0;
    for (const auto& m : ParseMountInfo([] {
           std::ifstream in(kMountInfoPath);
           return std::string((std::istreambuf_iterator<char>(in)), {});
         }()))
      n += m.mount_point == root;
    return n;
  };
  ASSERT_EQ(count(), 0);
  ASSERT_TRUE(MakeRShared(root).ok());
  EXPECT_EQ(count(), 1);
  auto m = FindMountInfo(root);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->mount_point, root);
  ASSERT_FALSE(m->optional_fields.empty());
  EXPECT_EQ(m->optional_fields[0].rfind("shared:", 0), 0u) << m->optional_fields[0];
  EXPECT_TRUE(fs::exists(dir / "root/pods")) << "the folder's content shows through the bind mount";
  ASSERT_TRUE(MakeRShared(root).ok());
  EXPECT_EQ(count(), 1) << "a second call stacked another bind mount";
  // A folder below a shared mount is on it already: nothing is mounted for it.
  fs::create_directories(dir / "root/pods/p");
  ASSERT_TRUE(MakeRShared((dir / "root/pods/p").string()).ok());
  EXPECT_FALSE(IsMountPoint((dir / "root/pods/p").string()));
  EXPECT_FALSE(MakeRShared((dir / "no-such").string()).ok()) << "a folder that does not exist cannot be bound";
  ::umount2(root.c_str(), MNT_DETACH);
  ::umount2(dir.c_str(), MNT_DETACH);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kubelet::mount
