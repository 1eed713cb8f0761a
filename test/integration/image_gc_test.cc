// Image GC against the fake CRI runtime (over gRPC): the threshold policy,
// least recently used first, the minimum age, images in use and pinned ones
// kept, the maximum age, FreeDiskSpaceFailed when too little can go, and the
// eviction manager's DeleteUnusedImages.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "fake/fake_runtime.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/images/image_gc_manager.h"

namespace kubelet::images {
namespace {

namespace rt = ::runtime::v1;
using kubelet::testing::FakeRuntime;
constexpr uint64_t Mi = 1 << 20;

class ImageGCTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("image-gc-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    fake_ = std::make_unique<FakeRuntime>((dir_ / "cri.sock").string());
    ASSERT_TRUE(fake_->Start());
    cri::RemoteOptions ro;
    ro.runtime_endpoint = fake_->endpoint();
    ro.timeout = std::chrono::seconds(5);
    remote_ = cri::NewRemoteRuntime(ro);
    fs_.capacity_bytes = 100 * Mi;
    fs_.available_bytes = 10 * Mi;  // 90% used
    deps_.images = remote_.get();
    deps_.runtime = remote_.get();
    deps_.clock = &clock_;
    deps_.image_fs = [this]() -> absl::StatusOr<stats::FsStats> { return fs_; };
    deps_.node_event = [this](const std::string&, const std::string& reason, const std::string& msg) {
      events_.push_back(reason + ": " + msg);
    };
    deps_.pinned = {"registry.local/pause:3.9"};
    policy_.min_age = std::chrono::minutes(2);
  }
  void TearDown() override {
    fake_->Stop();
    std::filesystem::remove_all(dir_);
  }
  // A running container using `image`.
  void RunContainer(const std::string& image) {
    rt::PodSandboxConfig sc;
    sc.mutable_metadata()->set_name("p");
    sc.mutable_metadata()->set_namespace_("ns");
    sc.mutable_metadata()->set_uid("uid1");
    auto sb = remote_->RunPodSandbox(sc, "");
    ASSERT_TRUE(sb.ok()) << sb.status();
    rt::ContainerConfig cc;
    cc.mutable_metadata()->set_name("c");
    cc.mutable_image()->set_image(image);
    auto id = remote_->CreateContainer(*sb, cc, sc);
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_TRUE(remote_->StartContainer(*id).ok());
  }

  std::filesystem::path dir_;
  std::unique_ptr<FakeRuntime> fake_;
  std::unique_ptr<cri::RemoteRuntime> remote_;
  FakeClock clock_;
  stats::FsStats fs_;
  ImageGCDeps deps_;
  ImageGCPolicy policy_;
  std::vector<std::string> events_;
};

TEST_F(ImageGCTest, ThresholdPolicyRemovesLeastRecentlyUsedPastTheMinimumAge) {
  fake_->AddImage("app:1", 6 * Mi);
  fake_->AddImage("old:1", 6 * Mi);
  fake_->AddImage("registry.local/pause:3.9", 6 * Mi);  // the sandbox image
  fake_->AddImage("pinned:1", 6 * Mi, true);           // pinned by the runtime
  RunContainer("app:1");
  ImageGCManager gc(deps_, policy_);
  ASSERT_TRUE(gc.DetectImages().ok());
  clock_.Step(std::chrono::seconds(30));
  fake_->AddImage("newer:1", 6 * Mi);
  ASSERT_TRUE(gc.DetectImages().ok());
  EXPECT_EQ(gc.Records(), 5u);

  // 90% used, low threshold 80%: 10 MiB to free, but every unused image is younger than the minimum age.
  clock_.Step(std::chrono::minutes(1));
  auto st = gc.GarbageCollect();
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "Failed to garbage collect required amount of images. Attempted to free 10485760 bytes, but only "
                          "found 0 bytes eligible to free.");
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].substr(0, 20), "FreeDiskSpaceFailed:");
  EXPECT_TRUE(fake_->HasImage("old:1"));

  // Old enough: the least recently seen goes first, then the next, until 10 MiB are freed.
  clock_.Step(std::chrono::minutes(2));
  ASSERT_TRUE(gc.GarbageCollect().ok());
  EXPECT_FALSE(fake_->HasImage("old:1"));
  EXPECT_FALSE(fake_->HasImage("newer:1"));
  EXPECT_TRUE(fake_->HasImage("app:1"));                     // in use
  EXPECT_TRUE(fake_->HasImage("registry.local/pause:3.9"));  // the sandbox image
  EXPECT_TRUE(fake_->HasImage("pinned:1"));
  EXPECT_EQ(gc.Records(), 3u);
}

TEST_F(ImageGCTest, BelowTheHighThresholdNothingGoesButTheMaximumAgeApplies) {
  fs_.available_bytes = 50 * Mi;  // 50% used
  fake_->AddImage("stale:1", 6 * Mi);
  fake_->AddImage("fresh:1", 6 * Mi);
  policy_.max_age = std::chrono::hours(1);
  ImageGCManager gc(deps_, policy_);
  ASSERT_TRUE(gc.DetectImages().ok());
  clock_.Step(std::chrono::minutes(50));
  ASSERT_TRUE(gc.GarbageCollect().ok());
  EXPECT_TRUE(fake_->HasImage("stale:1"));
  clock_.Step(std::chrono::minutes(11));
  ASSERT_TRUE(gc.GarbageCollect().ok());
  EXPECT_FALSE(fake_->HasImage("stale:1"));  // unused for over an hour
  EXPECT_FALSE(fake_->HasImage("fresh:1"));
  EXPECT_TRUE(events_.empty());
}

TEST_F(ImageGCTest, DeleteUnusedImagesForTheEvictionManager) {
  fake_->AddImage("app:1", 6 * Mi);
  fake_->AddImage("a:1", 3 * Mi);
  fake_->AddImage("b:1", 5 * Mi);
  RunContainer("app:1");
  ImageGCManager gc(deps_, policy_);
  ASSERT_TRUE(gc.DetectImages().ok());
  clock_.Step(std::chrono::minutes(3));
  auto freed = gc.DeleteUnusedImages();
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(*freed, static_cast<int64_t>(8 * Mi));
  EXPECT_TRUE(fake_->HasImage("app:1"));
  EXPECT_FALSE(fake_->HasImage("a:1"));
}

TEST_F(ImageGCTest, ZeroMinimumAgeFreesImagesSeenForTheFirstTime) {
  fake_->AddImage("new:1", 12 * Mi);
  policy_.min_age = Duration::zero();
  ImageGCManager gc(deps_, policy_);
  ASSERT_TRUE(gc.GarbageCollect().ok());  // detected and removed in the same round
  EXPECT_FALSE(fake_->HasImage("new:1"));
}

}  // namespace
}  // namespace kubelet::images
