#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"

namespace kubelet::config {
namespace {

nlohmann::json Manifest(const std::string& name = "web", const std::string& image = "busybox:1.35") {
  return nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name +
                               R"("},"spec":{"containers":[{"name":"c","image":")" + image + R"("}]}})");
}

TEST(StaticPod, NameUIDAndAnnotationsAsUpstream) {
  auto a = PrepareStaticPod(Manifest(), "/etc/kubernetes/manifests/web.yaml", true, "node1");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->metadata.name, "web-node1");
  EXPECT_EQ(a->metadata.namespace_, "default");
  EXPECT_EQ(a->spec.node_name, "node1");
  EXPECT_EQ(a->metadata.uid.size(), 32u);  // hex MD5
  EXPECT_EQ(a->metadata.annotations.at(api::kConfigHashAnnotation), a->metadata.uid);
  EXPECT_EQ(a->metadata.annotations.at(api::kConfigSourceAnnotation), "file");
  EXPECT_TRUE(api::IsStaticPod(*a));
  EXPECT_EQ(a->raw["spec"]["tolerations"][0]["operator"], "Exists");
}

TEST(StaticPod, UIDIsStableAndChangesWithContentNodeAndSource) {
  auto a = PrepareStaticPod(Manifest(), "/m/web.yaml", true, "node1");
  auto same = PrepareStaticPod(Manifest(), "/m/web.yaml", true, "node1");
  auto edited = PrepareStaticPod(Manifest("web", "busybox:1.36"), "/m/web.yaml", true, "node1");
  auto other_node = PrepareStaticPod(Manifest(), "/m/web.yaml", true, "node2");
  auto other_file = PrepareStaticPod(Manifest(), "/m/web2.yaml", true, "node1");
  auto http = PrepareStaticPod(Manifest(), "http://127.0.0.1/pods", false, "node1");
  ASSERT_TRUE(a.ok() && same.ok() && edited.ok() && other_node.ok() && other_file.ok() && http.ok());
  EXPECT_EQ(a->metadata.uid, same->metadata.uid);
  EXPECT_NE(a->metadata.uid, edited->metadata.uid);
  EXPECT_NE(a->metadata.uid, other_node->metadata.uid);
  EXPECT_NE(a->metadata.uid, other_file->metadata.uid);
  EXPECT_NE(a->metadata.uid, http->metadata.uid);
  EXPECT_EQ(http->metadata.annotations.at(api::kConfigSourceAnnotation), "http");
  auto given = Manifest();
  given["metadata"]["uid"] = "fixed-uid";
  EXPECT_EQ(PrepareStaticPod(given, "/m/web.yaml", true, "node1")->metadata.uid, "fixed-uid");
}

TEST(StaticPod, RejectsInvalidManifests) {
  auto noimage = Manifest();
  noimage["spec"]["containers"][0].erase("image");
  auto st = PrepareStaticPod(noimage, "/m/a.yaml", true, "n");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("image: Required value"), std::string::npos);
  auto svc = Manifest();
  svc["kind"] = "Service";
  EXPECT_FALSE(PrepareStaticPod(svc, "/m/a.yaml", true, "n").ok());
}

// Collects snapshots from a source, one at a time.
class Collector {
 public:
  void operator()(const std::string&, std::vector<api::Pod> pods) {
    std::lock_guard<std::mutex> l(mu_);
    last_ = std::move(pods);
    ++count_;
    cv_.notify_all();
  }
  // Waits until a snapshot satisfies pred.
  bool WaitFor(const std::function<bool(const std::vector<api::Pod>&)>& pred, std::chrono::seconds t = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, t, [&] { return count_ > 0 && pred(last_); });
  }
  std::vector<std::string> Names() {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::string> out;
    for (const auto& p : last_) out.push_back(p.metadata.name);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::Pod> last_;
  int count_ = 0;
};

class FileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kfs-" + std::to_string(::getpid()) + "-" +
                                                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (source_) source_->Stop();
    std::filesystem::remove_all(dir_);
  }
  void Write(const std::string& name, const std::string& text) {
    std::string tmp = (dir_ / ("." + name + ".tmp")).string();
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, dir_ / name);
  }
  void StartSource(Duration period = std::chrono::seconds(20)) {
    source_ = NewFileSource(dir_.string(), "n1", period, std::ref(collector_));
    source_->Start();
  }
  static std::string Pod(const std::string& name, const std::string& image = "busybox:1.35") {
    return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\nspec:\n  containers:\n  - name: c\n    image: " +
           image + "\n";
  }
  std::filesystem::path dir_;
  Collector collector_;
  std::unique_ptr<PodSource> source_;
};

TEST_F(FileSourceTest, ReadsManifestsSkippingDotfilesOtherFilesAndBrokenOnes) {
  Write("a.yaml", Pod("a"));
  Write("b.json", R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"x:1"}]}})");
  Write("c.yml", Pod("c"));
  Write(".hidden.yaml", Pod("hidden"));
  Write("notes.txt", Pod("txt"));
  Write("broken.yaml", "kind: Pod\nmetadata: [\n");
  Write("noimage.yaml", "kind: Pod\nmetadata: {name: noimage}\nspec:\n  containers: [{name: c}]\n");
  Write("dup.yaml", Pod("a"));  // same name as a.yaml: the later file is rejected
  StartSource();
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 3; }));
  EXPECT_EQ(collector_.Names(), (std::vector<std::string>{"a-n1", "b-n1", "c-n1"}));
}

TEST_F(FileSourceTest, InotifySeesAddsEditsAndRemovals) {
  Write("a.yaml", Pod("a"));
  StartSource(std::chrono::hours(1));  // no periodic rescan: only inotify can see the changes
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 1; }));
  Write("b.yaml", Pod("b"));
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 2; }));
  std::string old_uid;
  collector_.WaitFor([&](const auto& pods) {
    for (const auto& p : pods)
      if (p.metadata.name == "b-n1") old_uid = p.metadata.uid;
    return true;
  });
  Write("b.yaml", Pod("b", "busybox:1.36"));
  ASSERT_TRUE(collector_.WaitFor([&](const auto& pods) {
    for (const auto& p : pods)
      if (p.metadata.name == "b-n1") return p.metadata.uid != old_uid;
    return false;
  }));
  std::filesystem::remove(dir_ / "a.yaml");
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 1 && pods[0].metadata.name == "b-n1"; }));
}

TEST_F(FileSourceTest, ABrokenEditKeepsTheLastGoodPod) {
  Write("a.yaml", Pod("a"));
  StartSource(std::chrono::hours(1));
  std::string uid;
  ASSERT_TRUE(collector_.WaitFor([&](const auto& pods) {
    if (pods.size() != 1) return false;
    uid = pods[0].metadata.uid;
    return true;
  }));
  Write("b.yaml", Pod("b"));
  Write("a.yaml", "kind: Pod\nmetadata: [\n");  // broken edit
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bool kept = false;
  collector_.WaitFor([&](const auto& pods) {
    for (const auto& p : pods) kept |= p.metadata.uid == uid;
    return true;
  });
  EXPECT_TRUE(kept) << "a broken edit must not remove the running pod";
  std::filesystem::remove(dir_ / "a.yaml");
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 1; }));
}

TEST_F(FileSourceTest, MissingFolderIsAnEmptySourceUntilItAppears) {
  std::filesystem::remove_all(dir_);
  StartSource(std::chrono::milliseconds(200));
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.empty(); }));
  std::filesystem::create_directories(dir_);
  Write("a.yaml", Pod("a"));
  ASSERT_TRUE(collector_.WaitFor([](const auto& pods) { return pods.size() == 1; }));
}

TEST(PodConfig, MergesSnapshotsIntoChanges) {
  FakeClock clock;
  std::vector<std::vector<PodChange>> got;
  PodConfig pc(&clock, [&](std::vector<PodChange> ch) { got.push_back(std::move(ch)); });
  pc.AddSource("file");
  pc.AddSource("http");
  EXPECT_FALSE(pc.AllSourcesSeen());
  auto a = *PrepareStaticPod(Manifest("a"), "/m/a", true, "n");
  auto b = *PrepareStaticPod(Manifest("b"), "/m/b", true, "n");
  pc.OnSnapshot("file", {a, b});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].size(), 2u);
  EXPECT_EQ(got[0][0].op, PodOp::kAdd);
  EXPECT_TRUE(got[0][0].pod.metadata.annotations.count(api::kConfigSeenAnnotation));
  pc.OnSnapshot("file", {a, b});  // nothing changed
  EXPECT_TRUE(got[1].empty());
  auto a2 = a;
  a2.raw["metadata"]["labels"] = {{"x", "y"}};
  pc.OnSnapshot("file", {a2});
  ASSERT_EQ(got[2].size(), 2u);
  int updates = 0, removes = 0;
  for (const auto& c : got[2]) {
    updates += c.op == PodOp::kUpdate;
    removes += c.op == PodOp::kRemove && c.pod.metadata.name == "b-n";
  }
  EXPECT_EQ(updates, 1);
  EXPECT_EQ(removes, 1);
  EXPECT_FALSE(pc.AllSourcesSeen());
  pc.OnSnapshot("http", {});
  EXPECT_TRUE(pc.AllSourcesSeen());
}

}  // namespace
}  // namespace kubelet::config
