// The FsResourceAnalyzer (volume usage measured per pod in the background, served from a cache) and the
// kubelet_volume_stats_* exposition built from the summary.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "kubelet/stats/fs_resource_analyzer.h"
#include "kubelet/stats/provider.h"

namespace kubelet::stats {
namespace {

VolumeStats Usage(uint64_t capacity, uint64_t used) {
  VolumeStats v;
  v.fs.capacity_bytes = capacity;
  v.fs.used_bytes = used;
  v.fs.available_bytes = capacity - used;
  v.fs.inodes = 100;
  v.fs.inodes_used = 3;
  v.fs.inodes_free = 97;
  return v;
}

TEST(FsResourceAnalyzer, MeasuresEachPodNamesClaimsAndForgetsPodsThatWent) {
  std::mutex mu;
  std::vector<VolumeRef> refs = {{"uid-a", "ns", "a", "data", "claim-a", "pv-a"},
                                 {"uid-a", "ns", "a", "scratch", "", "scratch"},
                                 {"uid-b", "ns", "b", "data", "claim-b", "pv-b"}};
  std::vector<std::string> abnormal;
  FsResourceAnalyzerOptions o;
  o.period = std::chrono::hours(1);
  o.volumes = [&] {
    std::lock_guard<std::mutex> l(mu);
    return refs;
  };
  o.measure = [](const VolumeRef& r) -> absl::StatusOr<VolumeStats> {
    if (r.key == "scratch") return absl::NotFoundError("no stats");  // not offered: left out
    VolumeStats v = Usage(1000, r.key == "pv-a" ? 10 : 20);
    if (r.key == "pv-b") {
      v.abnormal = true;
      v.message = "disk gone";
    }
    return v;
  };
  o.abnormal = [&](const VolumeRef& r, const std::string& msg) {
    std::lock_guard<std::mutex> l(mu);
    abnormal.push_back(r.pod_name + "/" + r.name + ": " + msg);
  };
  FsResourceAnalyzer a(o);
  a.MeasureNow();
  auto va = a.PodVolumeStats("uid-a");
  ASSERT_EQ(va.size(), 1u);
  EXPECT_EQ(va[0].name, "data");
  EXPECT_EQ(va[0].pvc_name, "claim-a");
  EXPECT_EQ(va[0].pvc_namespace, "ns");
  EXPECT_EQ(va[0].fs.used_bytes, 10u);
  EXPECT_FALSE(va[0].abnormal.has_value());
  auto vb = a.PodVolumeStats("uid-b");
  ASSERT_EQ(vb.size(), 1u);
  EXPECT_TRUE(vb[0].abnormal.value_or(false));
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_EQ(abnormal.size(), 1u);
    EXPECT_EQ(abnormal[0], "b/data: disk gone");
    refs.resize(1);  // pod b went
  }
  a.MeasureNow();
  EXPECT_TRUE(a.PodVolumeStats("uid-b").empty());
  EXPECT_EQ(a.Size(), 1u);
}

TEST(FsResourceAnalyzer, ADriverThatHangsHoldsBackOnlyItsPod) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  FsResourceAnalyzerOptions o;
  o.period = std::chrono::milliseconds(20);
  o.volumes = [] {
    return std::vector<VolumeRef>{{"slow", "ns", "slow", "v", "c1", "k-slow"}, {"fast", "ns", "fast", "v", "c2", "k-fast"}};
  };
  std::atomic<int> fast_rounds{0};
  o.measure = [&](const VolumeRef& r) -> absl::StatusOr<VolumeStats> {
    if (r.key == "k-slow") {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return release; });
    } else {
      ++fast_rounds;
    }
    return Usage(100, 1);
  };
  FsResourceAnalyzer a(o);
  a.Start();
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (fast_rounds < 5 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(fast_rounds.load(), 5) << "the fast pod was measured again and again while the slow one hung";
  EXPECT_EQ(a.PodVolumeStats("fast").size(), 1u);
  EXPECT_TRUE(a.PodVolumeStats("slow").empty());
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  a.Stop();
}

TEST(VolumeStatsMetrics, OneSeriesPerClaimWithUpstreamNamesAndLabels) {
  Summary s;
  PodStats a, b;
  a.uid = "a";
  b.uid = "b";
  VolumeStats shared = Usage(1 << 20, 4096);
  shared.name = "data";
  shared.pvc_name = "store";
  shared.pvc_namespace = "default";
  shared.abnormal = false;
  VolumeStats empty_dir = Usage(50, 5);
  empty_dir.name = "scratch";  // no claim: not a series
  a.volumes = {shared, empty_dir};
  VolumeStats again = shared;
  again.fs.used_bytes = 1;  // the same claim in a second pod: reported once, from the first
  VolumeStats odd = Usage(10, 1);
  odd.name = "x";
  odd.pvc_name = "q\"uote";
  odd.pvc_namespace = "default";
  b.volumes = {again, odd};
  s.pods = {a, b};
  std::string text = EncodeVolumeStatsMetrics(s);
  EXPECT_NE(text.find("# HELP kubelet_volume_stats_capacity_bytes [ALPHA] Capacity in bytes of the volume\n"
                      "# TYPE kubelet_volume_stats_capacity_bytes gauge\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kubelet_volume_stats_capacity_bytes{namespace=\"default\",persistentvolumeclaim=\"store\"} 1048576\n"),
            std::string::npos);
  EXPECT_NE(text.find("kubelet_volume_stats_used_bytes{namespace=\"default\",persistentvolumeclaim=\"store\"} 4096\n"), std::string::npos);
  EXPECT_EQ(text.find("persistentvolumeclaim=\"store\"} 1\n"), std::string::npos) << "the second pod's sample was used";
  EXPECT_NE(text.find("kubelet_volume_stats_inodes_free{namespace=\"default\",persistentvolumeclaim=\"store\"} 97\n"), std::string::npos);
  EXPECT_NE(text.find("kubelet_volume_stats_health_status_abnormal{namespace=\"default\",persistentvolumeclaim=\"store\"} 0\n"),
            std::string::npos);
  // Health only where the driver reported it.
  EXPECT_EQ(text.find("kubelet_volume_stats_health_status_abnormal{namespace=\"default\",persistentvolumeclaim=\"q"), std::string::npos);
  EXPECT_NE(text.find("persistentvolumeclaim=\"q\\\"uote\"} 10\n"), std::string::npos) << "label values are escaped";
  EXPECT_EQ(text.find("scratch"), std::string::npos);
  // The summary carries every volume, with pvcRef and health where known.
  nlohmann::json j = EncodeSummary(s);
  ASSERT_EQ(j["pods"][0]["volume"].size(), 2u);
  EXPECT_EQ(j["pods"][0]["volume"][0]["pvcRef"], nlohmann::json({{"name", "store"}, {"namespace", "default"}}));
  EXPECT_EQ(j["pods"][0]["volume"][0]["volumeHealthStats"]["abnormal"], false);
  EXPECT_FALSE(j["pods"][0]["volume"][1].contains("pvcRef"));
  EXPECT_EQ(j["pods"][0]["volume"][1]["usedBytes"], 5);
}

}  // namespace
}  // namespace kubelet::stats
