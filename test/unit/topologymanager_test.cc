// The topology manager on fake topologies: bit masks, the merge under each policy (upstream's cases: preferred over
// not, narrowest, the non-preferred target size, single-numa-node's filter, prefer-closest-numa-nodes by distance),
// the admission flow per container and per pod with fake hint providers, its errors, NUMA discovery from a fake
// sysfs, and the CPU manager's hints on a fake two-node machine.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kubelet/cm/cpu_manager.h"
#include "kubelet/cm/topologymanager.h"

namespace kubelet::cm {
namespace {

namespace fs = std::filesystem;

BitMask M(std::vector<int> nodes) { return *BitMask::Of(nodes); }
TopologyHint H(std::vector<int> nodes, bool preferred) { return TopologyHint{M(nodes), preferred}; }
TopologyHint Any(bool preferred) { return TopologyHint{std::nullopt, preferred}; }

TEST(BitMask, CountNarrownessStringAndIteration) {
  EXPECT_FALSE(BitMask::Of({64}).ok());
  EXPECT_EQ(M({0, 2}).Count(), 2);
  EXPECT_TRUE(M({0}).IsNarrowerThan(M({0, 1})));
  EXPECT_TRUE(M({0, 1}).IsNarrowerThan(M({0, 2})));  // as many nodes: the lower-numbered ones
  EXPECT_FALSE(M({1}).IsNarrowerThan(M({0})));
  EXPECT_EQ(M({0}).String(), "01");
  EXPECT_EQ(M({1}).String(), "10");
  EXPECT_EQ(M({0, 1}).String(), "11");
  EXPECT_EQ(M({2}).String(), "100");
  EXPECT_EQ(M({0, 3}).String(), "1001");
  EXPECT_EQ(M({}).String(), "00");
  std::vector<std::string> seen;
  IterateBitMasks({0, 1, 2}, [&](const BitMask& m) { seen.push_back(m.String()); });
  EXPECT_EQ(seen, (std::vector<std::string>{"01", "10", "100", "11", "0101", "0110", "0111"}));
  EXPECT_EQ(H({0}, true).String(), "{01 true}");
  EXPECT_EQ(Any(false).String(), "{<nil> false}");
}

const NUMAInfo kTwo{{0, 1}, {}};

std::pair<TopologyHint, bool> Merge(const std::string& policy, std::vector<TopologyHints> providers, const NUMAInfo& numa = kTwo,
                                    TopologyPolicyOptions opts = {}) {
  return MergeTopologyHints(policy, numa, opts, providers);
}

TEST(TopologyMerge, NoHintsMeanAnyNodePreferred) {
  for (const char* p : {kTopologyPolicyBestEffort, kTopologyPolicyRestricted}) {
    auto [best, admit] = Merge(p, {});
    EXPECT_EQ(best, H({0, 1}, true)) << p;
    EXPECT_TRUE(admit) << p;
    std::tie(best, admit) = Merge(p, {TopologyHints{{"cpu", std::nullopt}}, TopologyHints{}});
    EXPECT_EQ(best, H({0, 1}, true)) << p;
    EXPECT_TRUE(admit);
  }
  auto [best, admit] = Merge(kTopologyPolicySingleNumaNode, {});
  EXPECT_EQ(best, Any(true));  // the whole machine is reported as "any node"
  EXPECT_TRUE(admit);
}

TEST(TopologyMerge, PreferredAndNarrowestWin) {
  std::vector<TopologyHints> in = {
      {{"cpu", std::vector<TopologyHint>{H({0}, true), H({1}, true), H({0, 1}, false)}}},
      {{"example.com/gpu", std::vector<TopologyHint>{H({1}, true), H({0, 1}, false)}}},
  };
  for (const char* p : {kTopologyPolicyBestEffort, kTopologyPolicyRestricted, kTopologyPolicySingleNumaNode}) {
    auto [best, admit] = Merge(p, in);
    EXPECT_EQ(best, H({1}, true)) << p;
    EXPECT_TRUE(admit) << p;
  }
  // Two resources on different nodes: no preferred hint; best-effort still admits, the others refuse.
  std::vector<TopologyHints> apart = {
      {{"cpu", std::vector<TopologyHint>{H({0}, true), H({0, 1}, false)}}},
      {{"example.com/gpu", std::vector<TopologyHint>{H({1}, true), H({0, 1}, false)}}},
  };
  auto [best, admit] = Merge(kTopologyPolicyBestEffort, apart);
  EXPECT_EQ(best, H({0}, false));  // among non-preferred merges of one node each, the narrowest
  EXPECT_TRUE(admit);
  std::tie(best, admit) = Merge(kTopologyPolicyRestricted, apart);
  EXPECT_FALSE(admit);
  std::tie(best, admit) = Merge(kTopologyPolicySingleNumaNode, apart);
  EXPECT_EQ(best, Any(false));
  EXPECT_FALSE(admit);
}

TEST(TopologyMerge, AResourceThatCannotBePlaced) {
  std::vector<TopologyHints> in = {{{"example.com/gpu", std::vector<TopologyHint>{}}}};
  auto [best, admit] = Merge(kTopologyPolicyBestEffort, in);
  EXPECT_EQ(best, H({0, 1}, false));
  EXPECT_TRUE(admit);
  EXPECT_FALSE(Merge(kTopologyPolicyRestricted, in).second);
  EXPECT_FALSE(Merge(kTopologyPolicySingleNumaNode, in).second);
}

TEST(TopologyMerge, SingleNumaNodeDropsWiderHints) {
  // Preferred across both nodes (a request too big for one): restricted admits it, single-numa-node does not.
  std::vector<TopologyHints> wide = {{{"cpu", std::vector<TopologyHint>{H({0, 1}, true)}}}};
  auto [best, admit] = Merge(kTopologyPolicyRestricted, wide);
  EXPECT_EQ(best, H({0, 1}, true));
  EXPECT_TRUE(admit);
  EXPECT_FALSE(Merge(kTopologyPolicySingleNumaNode, wide).second);
  // Masks that are preferred but differ make a merged hint that is not (only equal masks stay preferred).
  std::vector<TopologyHints> mixed = {
      {{"cpu", std::vector<TopologyHint>{H({0}, true), H({0, 1}, true)}}},
      {{"example.com/gpu", std::vector<TopologyHint>{H({0, 1}, true)}}},
  };
  std::tie(best, admit) = Merge(kTopologyPolicyRestricted, mixed);
  EXPECT_EQ(best, H({0, 1}, true));
}

TEST(TopologyMerge, NonPreferredHintsAimAtTheWidestNarrowestNeed) {
  // Four nodes. Provider A needs two nodes at least, B one: among non-preferred merges the two-node one wins over
  // the narrower one-node merge (upstream's bestNonPreferredAffinityCount).
  NUMAInfo four{{0, 1, 2, 3}, {}};
  std::vector<TopologyHints> in = {
      {{"a", std::vector<TopologyHint>{H({0, 1}, false), H({0, 1, 2, 3}, false)}}},
      {{"b", std::vector<TopologyHint>{H({0}, true), H({0, 1, 2, 3}, false)}}},
  };
  auto [best, admit] = Merge(kTopologyPolicyBestEffort, in, four);
  EXPECT_EQ(best, H({0, 1}, false));
  EXPECT_TRUE(admit);
}

TEST(TopologyMerge, PreferClosestNUMANodesUsesTheDistances) {
  NUMAInfo four{{0, 1, 2, 3}, {{0, {10, 11, 21, 21}}, {1, {11, 10, 21, 21}}, {2, {21, 21, 10, 11}}, {3, {21, 21, 11, 10}}}};
  std::vector<TopologyHints> in = {{{"cpu", std::vector<TopologyHint>{H({1, 2}, true), H({2, 3}, true)}}}};
  EXPECT_EQ(Merge(kTopologyPolicyBestEffort, in, four).first, H({1, 2}, true));  // narrowest: lower-numbered nodes
  TopologyPolicyOptions closest;
  closest.prefer_closest_numa = true;
  EXPECT_EQ(Merge(kTopologyPolicyBestEffort, in, four, closest).first, H({2, 3}, true));  // average distance 10.5 < 15.5
  EXPECT_DOUBLE_EQ(four.AverageDistance(M({1, 2})), 15.5);
}

TEST(TopologyOptions, UpstreamsErrors) {
  EXPECT_TRUE(ParseTopologyPolicyOptions({{"prefer-closest-numa-nodes", "true"}})->prefer_closest_numa);
  EXPECT_EQ(ParseTopologyPolicyOptions({{"prefer-closest-numa-nodes", "yes"}}).status().message(),
            "bad value for option \"prefer-closest-numa-nodes\": strconv.ParseBool: parsing \"yes\": invalid syntax");
  EXPECT_EQ(ParseTopologyPolicyOptions({{"max-allowable-numa-nodes", "4"}}).status().message(),
            "the minimum value of \"max-allowable-numa-nodes\" should not be less than 8");
  EXPECT_EQ(ParseTopologyPolicyOptions({{"max-allowable-numa-nodes", "x"}}).status().message(),
            "unable to convert policy option to integer \"max-allowable-numa-nodes\": strconv.Atoi: parsing \"x\": invalid syntax");
  EXPECT_EQ(ParseTopologyPolicyOptions({{"bogus", "1"}}).status().message(), "unknown Topology Manager Policy option: \"bogus\"");

  NUMAInfo ten;
  for (int i = 0; i < 10; ++i) ten.nodes.push_back(i);
  TopologyManagerOptions o;
  o.policy = kTopologyPolicyRestricted;
  EXPECT_EQ(TopologyManager::New(ten, o).status().message(), "unsupported on machines with more than 8 NUMA Nodes");
  o.policy_options = {{"max-allowable-numa-nodes", "16"}};
  EXPECT_TRUE(TopologyManager::New(ten, o).ok());
  o.policy = kTopologyPolicyNone;
  o.policy_options.clear();
  EXPECT_TRUE(TopologyManager::New(ten, o).ok());  // none does not care
  o.policy = "strict";
  EXPECT_EQ(TopologyManager::New(kTwo, o).status().message(), "unknown policy: \"strict\"");
  o.policy = kTopologyPolicyBestEffort;
  o.scope = "node";
  EXPECT_EQ(TopologyManager::New(kTwo, o).status().message(), "unknown scope: \"node\"");
}

// A provider with fixed hints per container (or pod) that records what it was asked and allocated.
class FakeProvider : public HintProvider {
 public:
  explicit FakeProvider(const AffinityStore* store) : store_(store) {}
  TopologyHints GetTopologyHints(const api::Pod&, const api::Container& c) override {
    asked.push_back(c.name);
    auto it = per_container.find(c.name);
    return it == per_container.end() ? TopologyHints{} : it->second;
  }
  TopologyHints GetPodTopologyHints(const api::Pod& pod) override {
    asked.push_back("pod:" + pod.metadata.name);
    return pod_hints;
  }
  absl::Status Allocate(const api::Pod& pod, const api::Container& c) override {
    allocated.push_back(c.name + "@" + store_->GetAffinity(pod.metadata.uid, c.name).String());
    return c.name == fail_on ? absl::ResourceExhaustedError("no more widgets") : absl::OkStatus();
  }
  const AffinityStore* store_;
  std::map<std::string, TopologyHints> per_container;
  TopologyHints pod_hints;
  std::string fail_on;
  std::vector<std::string> asked, allocated;
};

api::Pod TwoContainerPod() {
  api::Pod p;
  p.metadata.uid = "uid-1";
  p.metadata.name = "p";
  p.metadata.namespace_ = "default";
  api::Container init, app, side;
  init.name = "init";
  app.name = "app";
  side.name = "side";
  p.spec.init_containers = {init};
  p.spec.containers = {app, side};
  return p;
}

TEST(TopologyManagerAdmit, ContainerScopeHintsThenAllocationInOrder) {
  int requests = 0, errors = 0;
  TopologyManagerOptions o;
  o.policy = kTopologyPolicyRestricted;
  o.on_request = [&] { ++requests; };
  o.on_error = [&] { ++errors; };
  auto tm = *TopologyManager::New(kTwo, o);
  FakeProvider cpu(tm.get()), dev(tm.get());
  tm->AddHintProvider(&cpu);
  tm->AddHintProvider(&dev);
  cpu.per_container["app"] = {{"cpu", std::vector<TopologyHint>{H({0}, true), H({1}, true), H({0, 1}, false)}}};
  dev.per_container["app"] = {{"example.com/gpu", std::vector<TopologyHint>{H({1}, true), H({0, 1}, false)}}};
  auto pod = TwoContainerPod();
  auto r = tm->Admit(pod);
  ASSERT_TRUE(r.admit) << r.message;
  EXPECT_EQ(cpu.asked, (std::vector<std::string>{"init", "app", "side"}));
  // Each provider allocates a container after its affinity is kept; containers without hints get "any node".
  EXPECT_EQ(cpu.allocated, (std::vector<std::string>{"init@{11 true}", "app@{10 true}", "side@{11 true}"}));
  EXPECT_EQ(dev.allocated, cpu.allocated);
  EXPECT_EQ(tm->GetAffinity("uid-1", "app"), H({1}, true));
  EXPECT_EQ(requests, 1);
  EXPECT_EQ(errors, 0);

  // The CPU on node 0 only, the device on node 1 only: refused before anything of the container is allocated.
  cpu.per_container["app"] = {{"cpu", std::vector<TopologyHint>{H({0}, true)}}};
  cpu.allocated.clear();
  dev.allocated.clear();
  pod.metadata.uid = "uid-2";
  r = tm->Admit(pod);
  EXPECT_FALSE(r.admit);
  EXPECT_EQ(r.reason, "TopologyAffinityError");
  EXPECT_EQ(r.message, "Resources cannot be allocated with Topology locality");
  EXPECT_EQ(cpu.allocated, (std::vector<std::string>{"init@{11 true}"}));
  EXPECT_EQ(tm->GetAffinity("uid-2", "init"), Any(false));  // a refused pod keeps nothing
  EXPECT_EQ(errors, 1);

  // A provider's allocation error: upstream's unexpected admission error.
  cpu.per_container.clear();
  dev.fail_on = "side";
  pod.metadata.uid = "uid-3";
  r = tm->Admit(pod);
  EXPECT_FALSE(r.admit);
  EXPECT_EQ(r.reason, "UnexpectedAdmissionError");
  EXPECT_EQ(r.message, "Allocate failed due to no more widgets, which is unexpected");
  EXPECT_EQ(requests, 3);
  EXPECT_EQ(errors, 2);
}

TEST(TopologyManagerAdmit, PodScopeOneHintForEveryContainer) {
  TopologyManagerOptions o;
  o.policy = kTopologyPolicySingleNumaNode;
  o.scope = kTopologyScopePod;
  auto tm = *TopologyManager::New(kTwo, o);
  FakeProvider cpu(tm.get());
  tm->AddHintProvider(&cpu);
  cpu.pod_hints = {{"cpu", std::vector<TopologyHint>{H({1}, true), H({0, 1}, false)}}};
  auto pod = TwoContainerPod();
  auto r = tm->Admit(pod);
  ASSERT_TRUE(r.admit) << r.message;
  EXPECT_EQ(cpu.asked, std::vector<std::string>{"pod:p"});
  EXPECT_EQ(cpu.allocated, (std::vector<std::string>{"init@{10 true}", "app@{10 true}", "side@{10 true}"}));
  cpu.pod_hints = {{"cpu", std::vector<TopologyHint>{H({0, 1}, true)}}};
  pod.metadata.uid = "uid-2";
  EXPECT_EQ(tm->Admit(pod).reason, "TopologyAffinityError");
}

TEST(TopologyManagerAdmit, PolicyNoneAllocatesWithoutHints) {
  auto tm = *TopologyManager::New(kTwo, TopologyManagerOptions{});
  FakeProvider cpu(tm.get());
  tm->AddHintProvider(&cpu);
  auto pod = TwoContainerPod();
  ASSERT_TRUE(tm->Admit(pod).admit);
  EXPECT_TRUE(cpu.asked.empty());
  EXPECT_EQ(cpu.allocated, (std::vector<std::string>{"init@{<nil> false}", "app@{<nil> false}", "side@{<nil> false}"}));
  EXPECT_EQ(tm->PodsTracked(), 0u);
}

TEST(TopologyManagerAdmit, AffinitiesOfGonePodsArePruned) {
  std::set<std::string> active;
  TopologyManagerOptions o;
  o.policy = kTopologyPolicyBestEffort;
  o.active_pods = [&] { return active; };
  auto tm = *TopologyManager::New(kTwo, o);
  auto pod = TwoContainerPod();
  for (int i = 0; i < 200; ++i) {
    pod.metadata.uid = "uid-" + std::to_string(i);
    active = {pod.metadata.uid};
    ASSERT_TRUE(tm->Admit(pod).admit);
  }
  EXPECT_LE(tm->PodsTracked(), 64u);  // bounded by the active pods, not by every pod ever admitted
}

TEST(NUMADiscovery, FromAFakeSysfs) {
  fs::path root = fs::temp_directory_path() / ("numa-test-" + std::to_string(getpid()));
  fs::create_directories(root / "node" / "node0");
  fs::create_directories(root / "node" / "node1");
  fs::create_directories(root / "node" / "power");
  std::ofstream(root / "node" / "node0" / "distance") << "10 21\n";
  std::ofstream(root / "node" / "node1" / "distance") << "21 10\n";
  std::ofstream(root / "node" / "possible") << "0-1\n";
  auto numa = DiscoverNUMA((root / "node").string());
  EXPECT_EQ(numa.nodes, (std::vector<int>{0, 1}));
  EXPECT_EQ(numa.distances[1], (std::vector<uint64_t>{21, 10}));
  EXPECT_EQ(DiscoverNUMA((root / "missing").string()).nodes, std::vector<int>{0});

  for (int cpu = 0; cpu < 4; ++cpu) {
    fs::path d = root / "cpu" / ("cpu" + std::to_string(cpu));
    fs::create_directories(d / "topology");
    std::ofstream(d / "topology" / "core_id") << cpu;
    std::ofstream(d / "topology" / "physical_package_id") << 0;
    fs::create_directories(d / ("node" + std::to_string(cpu / 2)));
  }
  std::ofstream(root / "cpu" / "online") << "0-3\n";
  auto cpus = DiscoverCPUs((root / "cpu").string());
  ASSERT_EQ(cpus.size(), 4u);
  EXPECT_EQ(cpus[1].numa, 0);
  EXPECT_EQ(cpus[2].numa, 1);
  std::error_code ec;
  fs::remove_all(root, ec);
}

api::Pod Guaranteed(const std::string& uid, const std::string& cpu) {
  api::Pod p;
  p.metadata.uid = uid;
  p.metadata.name = uid;
  p.metadata.namespace_ = "default";
  api::Container c;
  c.name = "app";
  for (auto* rl : {&c.resources.limits, &c.resources.requests}) {
    (*rl)["cpu"] = cpu;
    (*rl)["memory"] = "64Mi";
  }
  p.spec.containers.push_back(c);
  return p;
}

TEST(CPUManagerHints, OnAFakeTwoNodeMachine) {
  TopologyManagerOptions to;
  to.policy = kTopologyPolicyBestEffort;
  auto tm = *TopologyManager::New(kTwo, to);
  CPUManagerOptions o;
  o.policy = "static";
  o.reserved_system_cpus = "0";
  CPUManagerDeps d;
  d.affinity = tm.get();
  // CPUs 0,1 on node 0 and 2,3 on node 1; CPU 0 reserved.
  auto m = *CPUManager::New({{0, 0, 0, 0}, {1, 1, 0, 0}, {2, 2, 0, 1}, {3, 3, 0, 1}}, o, d);
  tm->AddHintProvider(m.get());
  auto two = Guaranteed("two", "2");
  auto h = m->GetTopologyHints(two, two.spec.containers[0]);
  ASSERT_TRUE(h["cpu"].has_value());
  // Node 0 has one free CPU: only node 1 holds two; one node would do, so {1} is preferred and {0,1} is not.
  ASSERT_EQ(h["cpu"]->size(), 2u);
  EXPECT_EQ((*h["cpu"])[0], H({1}, true));
  EXPECT_EQ((*h["cpu"])[1], H({0, 1}, false));
  auto burstable = Guaranteed("half", "500m");
  EXPECT_TRUE(m->GetTopologyHints(burstable, burstable.spec.containers[0]).empty());  // no preference
  auto three = Guaranteed("three", "3");
  auto h3 = m->GetTopologyHints(three, three.spec.containers[0]);
  ASSERT_EQ(h3["cpu"]->size(), 1u);
  EXPECT_EQ((*h3["cpu"])[0], H({0, 1}, true));  // no single node has three CPUs: both nodes is the best there is

  // Admission through the topology manager: the CPUs come from node 1.
  ASSERT_TRUE(tm->Admit(two).admit);
  EXPECT_EQ(FormatCPUSet(m->Assignments()["two"]["app"]), "2-3");
  // Hints of a container that has its CPUs are regenerated from them.
  auto again = m->GetTopologyHints(two, two.spec.containers[0]);
  EXPECT_EQ((*again["cpu"])[0], H({1}, true));
  // One CPU left (on node 0): a pod asking for one gets it from node 0; RemovePod gives CPUs back.
  auto one = Guaranteed("one", "1");
  EXPECT_EQ((*m->GetPodTopologyHints(one)["cpu"])[0], H({0}, true));
  ASSERT_TRUE(tm->Admit(one).admit);
  EXPECT_EQ(FormatCPUSet(m->Assignments()["one"]["app"]), "1");
  m->RemovePod("two");
  EXPECT_EQ(FormatCPUSet(m->DefaultSet()), "0,2-3");
}

}  // namespace
}  // namespace kubelet::cm
