// The eviction manager on fake stats: threshold parsing, observations,
// upstream's ranking for memory and pids, messages, conditions with the
// transition period, soft grace periods, minimum reclaim, node-level reclaim
// before evicting for disk, critical pods spared, and admission under pressure.
#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/eviction/eviction_manager.h"

namespace kubelet::eviction {
namespace {

using json = nlohmann::json;
constexpr int64_t Mi = 1 << 20;

api::Pod MakePod(const std::string& name, const std::string& resources, int priority = 0, bool is_static = false,
                 const std::string& extra_spec = "") {
  std::string doc = "kind: Pod\nmetadata:\n  name: " + name + "\n  namespace: ns\n  uid: uid-" + name + "\n";
  if (is_static) doc += "  annotations: {kubernetes.io/config.source: file}\n";
  doc += "spec:\n  priority: " + std::to_string(priority) + "\n" + extra_spec + "  containers:\n  - name: c\n    image: x:1\n    resources: " +
         resources + "\n";
  auto j = api::ParseDocument(doc);
  EXPECT_TRUE(j.ok()) << j.status();
  api::ApplyPodDefaults(*j);
  auto pod = api::DecodePod(*j);
  EXPECT_TRUE(pod.ok()) << pod.status() << doc;
  return *pod;
}

stats::PodStats PodUsage(const api::Pod& p, int64_t memory, uint64_t procs = 1) {
  stats::PodStats s;
  s.name = p.metadata.name;
  s.namespace_ = p.metadata.namespace_;
  s.uid = p.metadata.uid;
  s.memory.working_set_bytes = static_cast<uint64_t>(memory);
  s.process_count = procs;
  stats::ContainerStats c;
  c.name = "c";
  c.memory.working_set_bytes = static_cast<uint64_t>(memory);
  s.containers.push_back(c);
  return s;
}

stats::Summary NodeWith(int64_t mem_available, int64_t mem_working_set) {
  stats::Summary s;
  s.node.memory.available_bytes = static_cast<uint64_t>(mem_available);
  s.node.memory.working_set_bytes = static_cast<uint64_t>(mem_working_set);
  s.node.fs.capacity_bytes = 100ull << 30;
  s.node.fs.available_bytes = 50ull << 30;
  s.node.fs.inodes = 1000000;
  s.node.fs.inodes_free = 900000;
  s.node.max_pid = 32768;
  s.node.cur_proc = 300;
  return s;
}

TEST(Thresholds, ParseAsUpstream) {
  auto t = ParseThresholds({{"memory.available", "100Mi"}, {"nodefs.available", "10%"}, {"imagefs.available", "0%"}},
                           {{"memory.available", "300Mi"}}, {{"memory.available", "1m30s"}}, {{"memory.available", "50Mi"}});
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 3u);  // "0%" is no threshold
  EXPECT_EQ(*(*t)[0].quantity, 100 * Mi);
  EXPECT_EQ(*(*t)[0].min_reclaim_quantity, 50 * Mi);
  EXPECT_DOUBLE_EQ((*t)[1].percentage, 0.10);
  EXPECT_FALSE((*t)[2].hard);
  EXPECT_EQ((*t)[2].grace_period, std::chrono::seconds(90));
  EXPECT_EQ(ParseThresholds({{"memory.free", "1Mi"}}, {}, {}, {}).status().message(), "unsupported eviction signal memory.free");
  EXPECT_FALSE(ParseThresholds({{"nodefs.available", "120%"}}, {}, {}, {}).ok());
  EXPECT_EQ(ParseThresholds({}, {{"memory.available", "1Gi"}}, {}, {}).status().message(),
            "no grace period specified for soft eviction threshold memory.available");
  EXPECT_EQ(ThresholdValue((*t)[1], 1000), 100);
}

TEST(Thresholds, ObservationsFromTheSummary) {
  auto s = NodeWith(200 * Mi, 800 * Mi);
  auto o = Observe(s);
  EXPECT_EQ(o["memory.available"].available, 200 * Mi);
  EXPECT_EQ(o["memory.available"].capacity, 1000 * Mi);
  EXPECT_EQ(o["nodefs.inodesFree"].available, 900000);
  EXPECT_EQ(o["pid.available"].available, 32768 - 300);
  EXPECT_EQ(o.count("imagefs.available"), 0u);  // no image filesystem reported
  EXPECT_EQ(o.count("allocatableMemory.available"), 0u);
  // Node allocatable enforced: the pods' cgroup against allocatable memory.
  stats::MemoryStats pods;
  pods.working_set_bytes = 700 * Mi;
  s.node.pods_memory = pods;
  o = Observe(s, 750 * Mi);
  EXPECT_EQ(o["allocatableMemory.available"].available, 50 * Mi);
  EXPECT_EQ(o["allocatableMemory.available"].capacity, 750 * Mi);
  auto t = *ParseThresholds({{"memory.available", "100Mi"}, {"nodefs.available", "10%"}}, {}, {}, {});
  AddAllocatableThresholds(&t);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[2].signal, "allocatableMemory.available");
  EXPECT_EQ(*t[2].quantity, 100 * Mi);
  EXPECT_EQ(ConditionFor(t[2].signal), "MemoryPressure");
}

TEST(Ranking, MemoryAsUpstream) {
  auto guaranteed = MakePod("guaranteed", "{limits: {memory: 100Mi, cpu: 100m}}");
  auto burstable = MakePod("burstable", "{requests: {memory: 50Mi}}");
  auto besteffort = MakePod("besteffort", "{}");
  auto important = MakePod("important", "{}", 1000);
  auto unknown = MakePod("unknown", "{}");
  stats::Summary s = NodeWith(10 * Mi, 990 * Mi);
  s.pods = {PodUsage(guaranteed, 90 * Mi), PodUsage(burstable, 200 * Mi), PodUsage(besteffort, 10 * Mi),
            PodUsage(important, 500 * Mi)};
  auto ranked = RankForEviction("memory.available", {&guaranteed, &burstable, &besteffort, &important, &unknown}, s);
  std::vector<std::string> names;
  for (const auto* p : ranked) names.push_back(p->metadata.name);
  // No stats first; then over their requests by priority and excess; the guaranteed pod within its request last.
  EXPECT_EQ(names, (std::vector<std::string>{"unknown", "burstable", "besteffort", "important", "guaranteed"}));

  s.pods = {PodUsage(guaranteed, 1, 50), PodUsage(burstable, 1, 5), PodUsage(important, 1, 500)};
  ranked = RankForEviction("pid.available", {&guaranteed, &burstable, &important}, s);
  EXPECT_EQ(ranked[0]->metadata.name, "guaranteed");  // lower priority, more processes
  EXPECT_EQ(ranked[2]->metadata.name, "important");
}

TEST(Ranking, DiskByEphemeralUsageAndInodes) {
  auto small = MakePod("small", "{}");
  auto big = MakePod("big", "{}");
  auto requested = MakePod("requested", "{requests: {ephemeral-storage: 1Gi}}");
  stats::Summary s = NodeWith(500 * Mi, 500 * Mi);
  auto usage = [](const api::Pod& p, uint64_t bytes, uint64_t inodes) {
    stats::PodStats ps = PodUsage(p, 0);
    ps.ephemeral_used_bytes = bytes;
    stats::FsStats f;
    f.used_bytes = bytes;
    f.inodes_used = inodes;
    ps.containers[0].rootfs = f;
    return ps;
  };
  s.pods = {usage(small, 10 * Mi, 5000), usage(big, 900 * Mi, 10), usage(requested, 500 * Mi, 100)};
  auto ranked = RankForEviction("nodefs.available", {&small, &requested, &big}, s);
  // Over their requests first (big, small), by excess; the pod within its 1Gi request last.
  EXPECT_EQ(ranked[0]->metadata.name, "big");
  EXPECT_EQ(ranked[1]->metadata.name, "small");
  EXPECT_EQ(ranked[2]->metadata.name, "requested");
  ranked = RankForEviction("imagefs.inodesFree", {&small, &requested, &big}, s);
  EXPECT_EQ(ranked[0]->metadata.name, "small");  // the most inodes
  Threshold t;
  t.signal = "nodefs.available";
  t.percentage = 0.1;
  EXPECT_EQ(EvictionMessage("nodefs.available", big, s, t, {5 * int64_t{1} << 30, 100 * (int64_t{1} << 30), {}}),
            "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. "
            "Container c was using 900Mi, request is 0, has larger consumption of ephemeral-storage. ");
  EXPECT_EQ(ConditionFor("imagefs.inodesFree"), "DiskPressure");
  EXPECT_EQ(ConditionFor("pid.available"), "PIDPressure");
}

TEST(Ranking, MessageAsUpstream) {
  auto burstable = MakePod("burstable", "{requests: {memory: 50Mi}}");
  stats::Summary s = NodeWith(50 * Mi, 950 * Mi);
  s.pods = {PodUsage(burstable, 200 * Mi)};
  Threshold t;
  t.signal = "memory.available";
  t.quantity = 100 * Mi;
  EXPECT_EQ(EvictionMessage("memory.available", burstable, s, t, {50 * Mi, 1000 * Mi, {}}),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
            "Container c was using 200Mi, request is 50Mi, has larger consumption of memory. ");
  t.signal = "pid.available";
  t.quantity = 1000;
  EXPECT_EQ(EvictionMessage("pid.available", burstable, s, t, {500, 32768, {}}),
            "The node was low on resource: pids. Threshold quantity: 1k, available: 500. ");
}

TEST(LocalStorage, LimitsAsUpstream) {
  auto volume = MakePod("volume", "{}", 0, false,
                        "  volumes: [{name: scratch, emptyDir: {sizeLimit: 10Mi}}, {name: ram, emptyDir: {medium: Memory}}]\n");
  auto pod_total = MakePod("total", "{limits: {ephemeral-storage: 20Mi}}");
  auto container = MakePod("container", "{limits: {ephemeral-storage: 50Mi}}", 0, false,
                           "  volumes: [{name: big, emptyDir: {}}]\n");
  auto fine = MakePod("fine", "{limits: {ephemeral-storage: 1Gi}}");
  auto usage = [](const api::Pod& p, uint64_t rootfs, uint64_t logs, std::map<std::string, uint64_t> volumes) {
    stats::PodStats ps = PodUsage(p, 0);
    stats::FsStats f;
    f.used_bytes = rootfs;
    ps.containers[0].rootfs = f;
    ps.containers[0].logs_used_bytes = logs;
    ps.volume_used_bytes = volumes;
    return ps;
  };
  stats::Summary s = NodeWith(500 * Mi, 500 * Mi);
  s.pods = {usage(volume, 1 * Mi, 0, {{"scratch", 11 * Mi}, {"ram", 1}}), usage(pod_total, 15 * Mi, 6 * Mi, {}),
            usage(container, 40 * Mi, 11 * Mi, {}), usage(fine, 10 * Mi, 1 * Mi, {})};
  auto v = LocalStorageViolation({&fine, &volume}, s);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->first->metadata.name, "volume");
  EXPECT_EQ(v->second, "Usage of EmptyDir volume \"scratch\" exceeds the limit \"10Mi\". ");
  v = LocalStorageViolation({&fine, &pod_total}, s);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->second, "Pod ephemeral local storage usage exceeds the total limit of containers 20Mi. ");
  v = LocalStorageViolation({&container}, s);
  ASSERT_TRUE(v.has_value());
  // 51Mi over the pod's 50Mi total is reported as the pod's; a container alone over its limit as the container's.
  EXPECT_EQ(v->second, "Pod ephemeral local storage usage exceeds the total limit of containers 50Mi. ");
  EXPECT_FALSE(LocalStorageViolation({&fine}, s).has_value());
  auto static_pod = MakePod("static", "{limits: {ephemeral-storage: 1Mi}}", 0, true);
  s.pods.push_back(usage(static_pod, 10 * Mi, 0, {}));
  EXPECT_FALSE(LocalStorageViolation({&static_pod}, s).has_value());  // critical
}

TEST(LocalStorage, ContainerOverItsOwnLimit) {
  std::string doc = "kind: Pod\nmetadata: {name: two, namespace: ns, uid: uid-two}\nspec:\n  containers:\n"
                    "  - {name: a, image: x, resources: {limits: {ephemeral-storage: 10Mi}}}\n"
                    "  - {name: b, image: x, resources: {limits: {ephemeral-storage: 100Mi}}}\n";
  auto j = *api::ParseDocument(doc);
  api::ApplyPodDefaults(j);
  auto pod = *api::DecodePod(j);
  stats::Summary s = NodeWith(500 * Mi, 500 * Mi);
  stats::PodStats ps;
  ps.uid = "uid-two";
  for (const char* name : {"a", "b"}) {
    stats::ContainerStats c;
    c.name = name;
    c.logs_used_bytes = 12 * Mi;  // a: over 10Mi; the pod (24Mi) within 110Mi
    ps.containers.push_back(c);
  }
  s.pods = {ps};
  auto v = LocalStorageViolation({&pod}, s);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->second, "Container a exceeded its local ephemeral storage limit \"10Mi\". ");
}

class Manager : public ::testing::Test {
 protected:
  void SetUp() override {
    pods_ = {MakePod("static", "{}", 0, true), MakePod("besteffort", "{}"), MakePod("burstable", "{requests: {memory: 64Mi}}")};
    summary_ = NodeWith(50 * Mi, 950 * Mi);
    summary_.pods = {PodUsage(pods_[0], 300 * Mi), PodUsage(pods_[1], 100 * Mi), PodUsage(pods_[2], 120 * Mi)};
    deps_.summary = [this]() -> absl::StatusOr<std::shared_ptr<const stats::Summary>> {
      return std::make_shared<const stats::Summary>(summary_);
    };
    deps_.clock = &clock_;
    deps_.active_pods = [this] { return pods_; };
    deps_.evict_pod = [this](const api::Pod& p, int64_t grace, const std::string& msg) {
      evicted_.push_back(p.metadata.name);
      graces_.push_back(grace);
      messages_.push_back(msg);
      return true;
    };
    deps_.pod_cleaned_up = [](const std::string&) { return true; };
  }
  EvictionOptions Options(const std::map<std::string, std::string>& hard, const std::map<std::string, std::string>& soft = {},
                          const std::map<std::string, std::string>& grace = {},
                          const std::map<std::string, std::string>& reclaim = {}) {
    EvictionOptions o;
    o.thresholds = *ParseThresholds(hard, soft, grace, reclaim);
    o.pressure_transition_period = std::chrono::seconds(30);
    o.max_pod_grace_period_seconds = 5;
    return o;
  }
  FakeClock clock_;
  std::vector<api::Pod> pods_;
  stats::Summary summary_;
  EvictionDeps deps_;
  std::vector<std::string> evicted_, messages_;
  std::vector<int64_t> graces_;
};

TEST_F(Manager, HardMemoryThresholdEvictsTheFirstRankedNonCriticalPod) {
  EvictionManager m(deps_, Options({{"memory.available", "100Mi"}}));
  auto uid = m.Synchronize();
  ASSERT_TRUE(uid.has_value());
  // The static pod uses most but is critical; the BestEffort pod (all usage above its zero request) goes first.
  EXPECT_EQ(evicted_, std::vector<std::string>{"besteffort"});
  EXPECT_EQ(graces_[0], 1);
  EXPECT_EQ(messages_[0], "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
                          "Container c was using 100Mi, request is 0, has larger consumption of memory. ");
  EXPECT_EQ(m.NodeConditions(), std::vector<std::string>{"MemoryPressure"});
  // Under memory pressure: BestEffort pods are refused, others and critical ones admitted, tolerating ones too.
  auto r = m.Admit(MakePod("new", "{}"));
  EXPECT_FALSE(r.admit);
  EXPECT_EQ(r.reason, "Evicted");
  EXPECT_EQ(r.message, "The node had condition: [MemoryPressure]. ");
  EXPECT_TRUE(m.Admit(MakePod("new2", "{requests: {memory: 1Mi}}")).admit);
  EXPECT_TRUE(m.Admit(MakePod("new3", "{}", 0, true)).admit);
  EXPECT_TRUE(m.Admit(MakePod("new4", "{}", 0, false,
                              "  tolerations: [{key: node.kubernetes.io/memory-pressure, operator: Exists, effect: NoSchedule}]\n"))
                  .admit);
  // Pressure gone: the condition stays for the transition period, then clears.
  summary_.node.memory.available_bytes = 800 * Mi;
  EXPECT_FALSE(m.Synchronize().has_value());
  EXPECT_TRUE(m.Has("MemoryPressure"));
  clock_.Step(std::chrono::seconds(31));
  m.Synchronize();
  EXPECT_TRUE(m.NodeConditions().empty());
  EXPECT_TRUE(m.Admit(MakePod("new5", "{}")).admit);
}

TEST_F(Manager, SoftThresholdWaitsForItsGracePeriod) {
  EvictionManager m(deps_, Options({}, {{"memory.available", "100Mi"}}, {{"memory.available", "20s"}}));
  EXPECT_FALSE(m.Synchronize().has_value());
  EXPECT_TRUE(m.Has("MemoryPressure"));  // the condition does not wait
  clock_.Step(std::chrono::seconds(10));
  EXPECT_FALSE(m.Synchronize().has_value());
  clock_.Step(std::chrono::seconds(11));
  EXPECT_TRUE(m.Synchronize().has_value());
  EXPECT_EQ(graces_[0], 5);  // min(evictionMaxPodGracePeriod, the pod's 30 s)
}

TEST_F(Manager, MinimumReclaimHoldsTheThresholdUntilReclaimed) {
  EvictionManager m(deps_, Options({{"memory.available", "100Mi"}}, {}, {}, {{"memory.available", "200Mi"}}));
  ASSERT_TRUE(m.Synchronize().has_value());
  summary_.node.memory.available_bytes = 150 * Mi;  // above 100Mi but not by 200Mi
  ASSERT_TRUE(m.Synchronize().has_value());
  summary_.node.memory.available_bytes = 400 * Mi;
  EXPECT_FALSE(m.Synchronize().has_value());
  EXPECT_EQ(evicted_.size(), 2u);
}

TEST_F(Manager, DiskPressureReclaimsImagesAndContainersBeforePods) {
  int reclaimed = 0;
  deps_.delete_unused_containers = [&] {
    ++reclaimed;
    return absl::OkStatus();
  };
  deps_.delete_unused_images = [&] {
    ++reclaimed;
    summary_.node.fs.available_bytes = 60ull << 30;  // the images freed enough
    return absl::OkStatus();
  };
  EvictionManager m(deps_, Options({{"nodefs.available", "55%"}}));
  EXPECT_FALSE(m.Synchronize().has_value());
  EXPECT_EQ(reclaimed, 2);
  EXPECT_TRUE(evicted_.empty());
  EXPECT_EQ(m.NodeConditions(), std::vector<std::string>{"DiskPressure"});
  auto r = m.Admit(MakePod("new", "{requests: {memory: 1Mi}}"));
  EXPECT_FALSE(r.admit);  // disk pressure refuses every non-critical pod
  EXPECT_EQ(r.message, "The node had condition: [DiskPressure]. ");
  // Not enough freed: a pod goes.
  deps_.delete_unused_images = [] { return absl::OkStatus(); };
  summary_.node.fs.available_bytes = 10ull << 30;
  EvictionManager m2(deps_, Options({{"nodefs.available", "55%"}}));
  EXPECT_TRUE(m2.Synchronize().has_value());
}

TEST_F(Manager, PidPressureEvictsTheLowestPriorityPodWithTheMostProcesses) {
  summary_.node.memory.available_bytes = 900 * Mi;
  summary_.pods[1].process_count = 10;
  summary_.pods[2].process_count = 400;
  summary_.node.cur_proc = 32000;  // 768 left
  EvictionManager m(deps_, Options({{"pid.available", "1000"}}));
  ASSERT_TRUE(m.Synchronize().has_value());
  EXPECT_EQ(evicted_, std::vector<std::string>{"burstable"});
  EXPECT_EQ(messages_[0], "The node was low on resource: pids. Threshold quantity: 1k, available: 768. ");
  EXPECT_EQ(m.NodeConditions(), std::vector<std::string>{"PIDPressure"});
}

TEST_F(Manager, OnlyCriticalPodsLeftMeansNoEviction) {
  pods_ = {pods_[0]};
  EvictionManager m(deps_, Options({{"memory.available", "100Mi"}}));
  EXPECT_FALSE(m.Synchronize().has_value());
  EXPECT_TRUE(evicted_.empty());
  EXPECT_TRUE(m.Has("MemoryPressure"));
}

}  // namespace
}  // namespace kubelet::eviction
