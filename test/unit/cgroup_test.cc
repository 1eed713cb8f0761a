// The container manager on fake cgroup trees (plain directories laid out as
// cgroup v1 mounts per controller, or one v2 unified mount): names per driver,
// upstream's cpu conversions, node allocatable on kubepods, QoS cgroups, pod
// cgroups by QoS class with their limits, driver mismatch and bad roots.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kubelet/api/codec.h"
#include "kubelet/cm/cgroup.h"
#include "kubelet/cm/container_manager.h"

namespace kubelet::cm {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

api::Pod MakePod(const std::string& uid, const std::string& resources_yaml, const std::string& second = "") {
  std::string doc = "kind: Pod\nmetadata: {name: p, namespace: ns, uid: " + uid + "}\nspec:\n  containers:\n"
                    "  - name: a\n    image: x:1\n    resources: " + resources_yaml + "\n";
  if (!second.empty()) doc += "  - name: b\n    image: x:1\n    resources: " + second + "\n";
  auto j = api::ParseDocument(doc);
  EXPECT_TRUE(j.ok()) << j.status();
  api::ApplyPodDefaults(*j);
  auto pod = api::DecodePod(*j);
  EXPECT_TRUE(pod.ok()) << pod.status();
  return *pod;
}

TEST(CgroupNames, DriversAsUpstream) {
  CgroupName pod = {"kubepods", "burstable", "pod8dbc5577-d0e2-4706"};
  EXPECT_EQ(ToCgroupfs(pod), "/kubepods/burstable/pod8dbc5577-d0e2-4706");
  EXPECT_EQ(ToSystemd(pod), "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8dbc5577_d0e2_4706.slice");
  EXPECT_EQ(ParseSystemd("kubepods-burstable-pod8dbc5577_d0e2_4706.slice"), pod);
  EXPECT_EQ(ParseSystemd("/system.slice"), CgroupName{"system"});
  EXPECT_EQ(ParseCgroupfs("/a/b/"), (CgroupName{"a", "b"}));
  EXPECT_EQ(ToCgroupfs({}), "/");
  EXPECT_EQ(ToSystemd({}), "/");
}

TEST(CgroupNames, CpuConversions) {
  EXPECT_EQ(MilliCPUToShares(0), 2u);
  EXPECT_EQ(MilliCPUToShares(1), 2u);
  EXPECT_EQ(MilliCPUToShares(100), 102u);
  EXPECT_EQ(MilliCPUToShares(1000), 1024u);
  EXPECT_EQ(MilliCPUToShares(1000000), 262144u);
  EXPECT_EQ(MilliCPUToQuota(0, 100000), 0);
  EXPECT_EQ(MilliCPUToQuota(5, 100000), 1000);  // the kernel's minimum
  EXPECT_EQ(MilliCPUToQuota(500, 100000), 50000);
  EXPECT_EQ(CpuSharesToCpuWeight(2), 1u);
  EXPECT_EQ(CpuSharesToCpuWeight(1024), 39u);
  EXPECT_EQ(CpuSharesToCpuWeight(262144), 10000u);
}

class FakeTree : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cgroup-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CgroupLayout V1() {
    // A mountinfo as this kind of machine has it: one mount per controller, a named systemd one, an empty unified one.
    std::ofstream mi(dir_ / "mountinfo");
    for (const char* c : {"cpu", "cpuacct", "cpuset", "memory", "pids", "devices"}) {
      fs::create_directories(dir_ / "v1" / c);
      mi << "32 31 0:29 / " << (dir_ / "v1" / c).string() << " rw,relatime - cgroup cgroup rw," << c << "\n";
    }
    mi << "40 31 0:37 / " << (dir_ / "v1" / "systemd").string() << " rw,relatime - cgroup cgroup rw,name=systemd\n";
    mi << "41 31 0:38 / " << (dir_ / "v1" / "unified").string() << " rw,relatime - cgroup2 cgroup2 rw\n";
    mi.close();
    std::ofstream(dir_ / "v1" / "cpuset" / "cpuset.cpus") << "0-1\n";
    std::ofstream(dir_ / "v1" / "cpuset" / "cpuset.mems") << "0\n";
    auto layout = DetectCgroupLayout((dir_ / "mountinfo").string());
    EXPECT_TRUE(layout.ok()) << layout.status();
    return *layout;
  }

  CgroupLayout V2() {
    std::ofstream mi(dir_ / "mountinfo2");
    fs::create_directories(dir_ / "v2");
    mi << "30 23 0:26 / " << (dir_ / "v2").string() << " rw - cgroup2 cgroup2 rw,nsdelegate\n";
    mi.close();
    std::ofstream(dir_ / "v2" / "cgroup.controllers") << "cpuset cpu io memory pids\n";
    auto layout = DetectCgroupLayout((dir_ / "mountinfo2").string());
    EXPECT_TRUE(layout.ok()) << layout.status();
    return *layout;
  }

  ContainerManagerOptions Options() {
    ContainerManagerOptions o;
    o.capacity = {2000, int64_t{4} << 30, 4096};
    o.system_reserved = {{"cpu", "500m"}, {"memory", "1Gi"}, {"pid", "96"}};
    o.pod_pids_limit = 1024;
    return o;
  }

  fs::path dir_;
};

TEST_F(FakeTree, DetectsV1AndV2) {
  auto v1 = V1();
  EXPECT_EQ(v1.version, CgroupVersion::kV1);
  EXPECT_EQ(v1.v1.at("memory"), (dir_ / "v1" / "memory").string());
  EXPECT_EQ(v1.v1.count("name=systemd"), 0u);
  auto v2 = V2();
  EXPECT_EQ(v2.version, CgroupVersion::kV2);
  EXPECT_EQ(v2.unified, (dir_ / "v2").string());
}

TEST_F(FakeTree, V1CgroupfsTreeWithAllocatableQoSAndPods) {
  ContainerManager cm(std::make_unique<CgroupManager>(V1(), "cgroupfs"), Options());
  ASSERT_TRUE(cm.Start(std::nullopt).ok());
  fs::path cpu = dir_ / "v1" / "cpu", mem = dir_ / "v1" / "memory", pids = dir_ / "v1" / "pids";
  // kubepods = capacity - systemReserved: 1500m (1536 shares), 3Gi, 4000 pids.
  EXPECT_EQ(Slurp(cpu / "kubepods" / "cpu.shares"), "1536");
  EXPECT_EQ(Slurp(mem / "kubepods" / "memory.limit_in_bytes"), std::to_string(int64_t{3} << 30));
  EXPECT_EQ(Slurp(pids / "kubepods" / "pids.max"), "4000");
  EXPECT_EQ(Slurp(cpu / "kubepods" / "besteffort" / "cpu.shares"), "2");
  EXPECT_TRUE(fs::is_directory(dir_ / "v1" / "devices" / "kubepods" / "burstable"));
  EXPECT_EQ(Slurp(dir_ / "v1" / "cpuset" / "kubepods" / "burstable" / "cpuset.cpus"), "0-1");  // a v1 cpuset starts empty

  auto guaranteed = MakePod("g1", "{limits: {cpu: '1', memory: 256Mi}}");
  auto burstable = MakePod("b1", "{requests: {cpu: 250m}, limits: {memory: 128Mi}}", "{requests: {cpu: 100m}}");
  auto besteffort = MakePod("e1", "{}");
  for (const auto* p : {&guaranteed, &burstable, &besteffort}) ASSERT_TRUE(cm.EnsurePodCgroup(*p).ok());
  EXPECT_EQ(cm.PodCgroupParent(guaranteed), "/kubepods/podg1");
  EXPECT_EQ(cm.PodCgroupParent(burstable), "/kubepods/burstable/podb1");
  EXPECT_EQ(cm.PodCgroupParent(besteffort), "/kubepods/besteffort/pode1");
  // Guaranteed: shares, quota, period, memory; and podPidsLimit.
  EXPECT_EQ(Slurp(cpu / "kubepods" / "podg1" / "cpu.shares"), "1024");
  EXPECT_EQ(Slurp(cpu / "kubepods" / "podg1" / "cpu.cfs_quota_us"), "100000");
  EXPECT_EQ(Slurp(cpu / "kubepods" / "podg1" / "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(Slurp(mem / "kubepods" / "podg1" / "memory.limit_in_bytes"), "268435456");
  EXPECT_EQ(Slurp(pids / "kubepods" / "podg1" / "pids.max"), "1024");
  // Burstable: shares from both requests; no quota and no memory limit since container b declares neither.
  EXPECT_EQ(Slurp(cpu / "kubepods" / "burstable" / "podb1" / "cpu.shares"), "358");
  EXPECT_FALSE(fs::exists(cpu / "kubepods" / "burstable" / "podb1" / "cpu.cfs_quota_us"));
  EXPECT_FALSE(fs::exists(mem / "kubepods" / "burstable" / "podb1" / "memory.limit_in_bytes"));
  EXPECT_EQ(Slurp(cpu / "kubepods" / "besteffort" / "pode1" / "cpu.shares"), "2");
  EXPECT_EQ(cm.PodCgroupUIDs(), (std::set<std::string>{"g1", "b1", "e1"}));

  ASSERT_TRUE(cm.UpdateQOSCgroups({&guaranteed, &burstable, &besteffort}).ok());
  EXPECT_EQ(Slurp(cpu / "kubepods" / "burstable" / "cpu.shares"), "358");

  ASSERT_TRUE(cm.DestroyPodCgroup("b1").ok());
  for (const char* c : {"cpu", "cpuacct", "cpuset", "memory", "pids", "devices"})
    EXPECT_FALSE(fs::exists(dir_ / "v1" / c / "kubepods" / "burstable" / "podb1")) << c;
  EXPECT_EQ(cm.PodCgroupUIDs(), (std::set<std::string>{"g1", "e1"}));
  EXPECT_TRUE(fs::is_directory(cpu / "kubepods" / "burstable"));  // the QoS cgroup stays
}

TEST_F(FakeTree, BurstableWithAllLimitsGetsQuotaAndMemory) {
  auto pod = MakePod("b2", "{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}");
  auto rc = ResourceConfigForPod(pod, true, 100000);
  EXPECT_EQ(*rc.cpu_shares, 102u);
  EXPECT_EQ(*rc.cpu_quota, 50000);
  EXPECT_EQ(*rc.memory, 128 << 20);
  auto unenforced = ResourceConfigForPod(pod, false, 100000);  // cpuCFSQuota: false
  EXPECT_EQ(*unenforced.cpu_quota, -1);
}

// spec.overhead (from the pod's RuntimeClass) counts in the pod cgroup as upstream's PodRequests/PodLimits count it:
// always in the requests, in a limit only where the containers set one; the QoS class ignores it.
TEST_F(FakeTree, PodOverheadIsAddedToRequestsAndToTheLimitsThePodHas) {
  auto guaranteed = MakePod("o1", "{limits: {cpu: 250m, memory: 64Mi}}");
  guaranteed.spec.overhead = {{"cpu", "250m"}, {"memory", "32Mi"}};
  auto rc = ResourceConfigForPod(guaranteed, true, 100000);
  EXPECT_EQ(*rc.cpu_shares, 512u);
  EXPECT_EQ(*rc.cpu_quota, 50000);
  EXPECT_EQ(*rc.memory, 96 << 20);
  EXPECT_EQ(api::QOSClass(guaranteed), "Guaranteed");
  auto burstable = MakePod("o2", "{requests: {cpu: 100m}, limits: {memory: 64Mi}}");
  burstable.spec.overhead = {{"cpu", "100m"}, {"memory", "16Mi"}};
  auto t = ComputePodResources(burstable);
  EXPECT_EQ(t.cpu_request_milli, 200);
  EXPECT_EQ(t.cpu_limit_milli, 0);  // no cpu limit: none made by the overhead
  EXPECT_EQ(t.memory_request, 80 << 20);  // the request defaults to the limit, then the overhead
  EXPECT_EQ(t.memory_limit, 80 << 20);
  auto besteffort = MakePod("o3", "{}");
  besteffort.spec.overhead = {{"cpu", "100m"}};
  EXPECT_EQ(api::QOSClass(besteffort), "BestEffort");
  EXPECT_EQ(ComputePodResources(besteffort).cpu_request_milli, 100);
}

TEST_F(FakeTree, V2SystemdTree) {
  auto o = Options();
  ContainerManager cm(std::make_unique<CgroupManager>(V2(), "systemd"), o);
  ASSERT_TRUE(cm.Start(std::nullopt).ok());
  fs::path kp = dir_ / "v2" / "kubepods.slice";
  EXPECT_EQ(Slurp(kp / "cpu.weight"), "59");  // 1536 shares
  EXPECT_EQ(Slurp(kp / "memory.max"), std::to_string(int64_t{3} << 30));
  EXPECT_EQ(Slurp(kp / "pids.max"), "4000");
  EXPECT_TRUE(fs::exists(dir_ / "v2" / "cgroup.subtree_control"));  // controllers handed down
  EXPECT_EQ(Slurp(kp / "kubepods-besteffort.slice" / "cpu.weight"), "1");
  auto guaranteed = MakePod("1234-abcd", "{limits: {cpu: 500m, memory: 64Mi}}");
  ASSERT_TRUE(cm.EnsurePodCgroup(guaranteed).ok());
  EXPECT_EQ(cm.PodCgroupParent(guaranteed), "/kubepods.slice/kubepods-pod1234_abcd.slice");
  fs::path pod = kp / "kubepods-pod1234_abcd.slice";
  EXPECT_EQ(Slurp(pod / "cpu.max"), "50000 100000");
  EXPECT_EQ(Slurp(pod / "memory.max"), std::to_string(64 << 20));
  EXPECT_EQ(Slurp(pod / "pids.max"), "1024");
  EXPECT_EQ(cm.PodCgroupUIDs(), std::set<std::string>{"1234-abcd"});
  ASSERT_TRUE(cm.DestroyPodCgroup("1234-abcd").ok());
  EXPECT_FALSE(fs::exists(pod));
}

TEST_F(FakeTree, V1SystemdAndV2CgroupfsTrees) {
  ContainerManager v1sd(std::make_unique<CgroupManager>(V1(), "systemd"), Options());
  ASSERT_TRUE(v1sd.Start(std::nullopt).ok());
  EXPECT_EQ(Slurp(dir_ / "v1" / "cpu" / "kubepods.slice" / "kubepods-besteffort.slice" / "cpu.shares"), "2");
  auto pod = MakePod("ab-cd", "{requests: {cpu: 100m}}");
  ASSERT_TRUE(v1sd.EnsurePodCgroup(pod).ok());
  EXPECT_EQ(v1sd.PodCgroupParent(pod), "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab_cd.slice");
  EXPECT_EQ(Slurp(dir_ / "v1" / "cpu" / "kubepods.slice" / "kubepods-burstable.slice" / "kubepods-burstable-podab_cd.slice" /
                  "cpu.shares"),
            "102");
  EXPECT_EQ(v1sd.PodCgroupUIDs(), std::set<std::string>{"ab-cd"});

  ContainerManager v2fs(std::make_unique<CgroupManager>(V2(), "cgroupfs"), Options());
  ASSERT_TRUE(v2fs.Start(std::nullopt).ok());
  ASSERT_TRUE(v2fs.EnsurePodCgroup(pod).ok());
  EXPECT_EQ(v2fs.PodCgroupParent(pod), "/kubepods/burstable/podab-cd");
  EXPECT_EQ(Slurp(dir_ / "v2" / "kubepods" / "burstable" / "podab-cd" / "cpu.weight"), "4");
  EXPECT_EQ(Slurp(dir_ / "v2" / "kubepods" / "burstable" / "podab-cd" / "pids.max"), "1024");
}

TEST_F(FakeTree, MisconfigurationsStopTheStart) {
  ContainerManager mismatch(std::make_unique<CgroupManager>(V1(), "cgroupfs"), Options());
  auto st = mismatch.Start(std::string("systemd"));
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "misconfiguration: kubelet cgroup driver: \"cgroupfs\" is different from the container runtime's cgroup driver: "
            "\"systemd\"");
  EXPECT_FALSE(fs::exists(dir_ / "v1" / "cpu" / "kubepods"));  // nothing touched

  auto o = Options();
  o.cgroup_root = "/missing";
  ContainerManager bad_root(std::make_unique<CgroupManager>(V1(), "cgroupfs"), o);
  st = bad_root.Start(std::nullopt);
  EXPECT_EQ(st.message(), "invalid configuration: cgroup-root \"/missing\" doesn't exist");

  o = Options();
  o.enforce_node_allocatable = {"pods", "system-reserved"};
  ContainerManager no_cgroup(std::make_unique<CgroupManager>(V1(), "cgroupfs"), o);
  st = no_cgroup.Start(std::nullopt);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("systemCgroup"), std::string::npos) << st;
}

TEST_F(FakeTree, CgroupRootAndReservedCgroupEnforcement) {
  auto layout = V1();
  for (const auto& [c, mount] : layout.v1) {
    fs::create_directories(fs::path(mount) / "custom");
    fs::create_directories(fs::path(mount) / "system.slice");
  }
  auto o = Options();
  o.cgroup_root = "/custom";
  o.enforce_node_allocatable = {"pods", "system-reserved"};
  o.system_reserved_cgroup = "/system.slice";
  ContainerManager cm(std::make_unique<CgroupManager>(layout, "cgroupfs"), o);
  ASSERT_TRUE(cm.Start(std::nullopt).ok());
  EXPECT_TRUE(fs::is_directory(dir_ / "v1" / "memory" / "custom" / "kubepods" / "besteffort"));
  EXPECT_EQ(Slurp(dir_ / "v1" / "memory" / "system.slice" / "memory.limit_in_bytes"), std::to_string(int64_t{1} << 30));
  EXPECT_EQ(Slurp(dir_ / "v1" / "cpu" / "system.slice" / "cpu.shares"), "512");
  auto pod = MakePod("x1", "{}");
  EXPECT_EQ(cm.PodCgroupParent(pod), "/custom/kubepods/besteffort/podx1");
}

}  // namespace
}  // namespace kubelet::cm
