#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/util/backoff.h"

namespace kubelet::kuberuntime {
namespace {

api::Pod MakePod(const std::string& restart = "Always", int containers = 2) {
  nlohmann::json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"uid", "u"}}}};
  j["spec"]["restartPolicy"] = restart;
  for (int i = 0; i < containers; ++i)
    j["spec"]["containers"].push_back({{"name", "c" + std::to_string(i)}, {"image", "x:1"}});
  api::ApplyPodDefaults(j);
  return *api::DecodePod(j);
}

PodStatus Running(const api::Pod& pod) {
  PodStatus s;
  s.sandboxes.push_back({"sb1", true, TimePoint(), 0, "10.0.0.2", {}, false});
  int i = 0;
  for (const auto& c : pod.spec.containers) {
    ContainerStatus cs;
    cs.id = "id-" + c.name;
    cs.name = c.name;
    cs.state = ContainerState::kRunning;
    cs.hash = HashContainer(c);
    cs.created_at = TimePoint(std::chrono::seconds(100 + i++));
    s.containers.push_back(cs);
  }
  return s;
}

TEST(ComputePodActions, NewPodCreatesSandboxAndAllContainers) {
  auto pod = MakePod();
  PodActions a = ComputePodActions(pod, PodStatus{});
  EXPECT_TRUE(a.create_sandbox);
  EXPECT_TRUE(a.kill_pod);
  EXPECT_EQ(a.attempt, 0u);
  EXPECT_EQ(a.containers_to_start, (std::vector<size_t>{0, 1}));
}

TEST(ComputePodActions, SteadyStateDoesNothing) {
  auto pod = MakePod();
  PodActions a = ComputePodActions(pod, Running(pod));
  EXPECT_FALSE(a.create_sandbox);
  EXPECT_FALSE(a.kill_pod);
  EXPECT_TRUE(a.containers_to_start.empty());
  EXPECT_TRUE(a.containers_to_kill.empty());
}

TEST(ComputePodActions, ExitedContainerRestartsPerPolicy) {
  for (auto [policy, code, restart] : std::vector<std::tuple<std::string, int, bool>>{
           {"Always", 0, true}, {"Always", 1, true}, {"OnFailure", 1, true}, {"OnFailure", 0, false},
           {"Never", 1, false}, {"Never", 0, false}}) {
    auto pod = MakePod(policy);
    auto st = Running(pod);
    st.containers[0].state = ContainerState::kExited;
    st.containers[0].exit_code = code;
    PodActions a = ComputePodActions(pod, st);
    EXPECT_EQ(a.containers_to_start == std::vector<size_t>{0}, restart) << policy << " exit " << code;
    EXPECT_FALSE(a.kill_pod);
  }
}

TEST(ComputePodActions, ChangedSpecKillsAndRestartsTheContainer) {
  auto pod = MakePod();
  auto st = Running(pod);
  st.containers[1].hash = "deadbeef";
  PodActions a = ComputePodActions(pod, st);
  EXPECT_EQ(a.containers_to_start, std::vector<size_t>{1});
  ASSERT_EQ(a.containers_to_kill.count("id-c1"), 1u);
}

TEST(ComputePodActions, DeadSandboxRecreatesWithNextAttempt) {
  auto pod = MakePod();
  auto st = Running(pod);
  st.sandboxes[0].ready = false;
  st.sandboxes[0].attempt = 3;
  PodActions a = ComputePodActions(pod, st);
  EXPECT_TRUE(a.create_sandbox);
  EXPECT_TRUE(a.kill_pod);
  EXPECT_EQ(a.attempt, 4u);
  EXPECT_EQ(a.sandbox_id, "sb1");
  // A pod that must not restart and already ran gets no new sandbox.
  auto never = MakePod("Never");
  auto ns = Running(never);
  ns.sandboxes[0].ready = false;
  ns.sandboxes[0].attempt = 0;
  ns.sandboxes[0].attempt = 1;
  EXPECT_FALSE(ComputePodActions(never, ns).create_sandbox);
}

TEST(ComputePodActions, SandboxWithoutIPIsReplacedUnlessHostNetwork) {
  auto pod = MakePod();
  auto st = Running(pod);
  st.sandboxes[0].ip.clear();
  EXPECT_TRUE(ComputePodActions(pod, st).create_sandbox);
  pod.spec.host_network = true;
  st.sandboxes[0].host_network = true;
  EXPECT_FALSE(ComputePodActions(pod, st).create_sandbox);
}

TEST(ComputePodActions, AllDoneWithNeverKillsPod) {
  auto pod = MakePod("Never", 1);
  auto st = Running(pod);
  st.containers[0].state = ContainerState::kExited;
  PodActions a = ComputePodActions(pod, st);
  EXPECT_TRUE(a.kill_pod);
  EXPECT_FALSE(a.create_sandbox);
}

TEST(ComputePodActions, UnknownContainerIsKilledThenStarted) {
  auto pod = MakePod("Always", 1);
  auto st = Running(pod);
  st.containers[0].state = ContainerState::kUnknown;
  PodActions a = ComputePodActions(pod, st);
  EXPECT_EQ(a.containers_to_start, std::vector<size_t>{0});
  EXPECT_EQ(a.containers_to_kill.count("id-c0"), 1u);
}

TEST(HashContainer, DependsOnSpecOnly) {
  auto a = MakePod();
  auto b = MakePod();
  EXPECT_EQ(HashContainer(a.spec.containers[0]), HashContainer(b.spec.containers[0]));
  EXPECT_NE(HashContainer(a.spec.containers[0]), HashContainer(a.spec.containers[1]));
}

TEST(Backoff, DoublesToMaxAndResetsAfterQuietPeriod) {
  FakeClock clock;
  Backoff b(std::chrono::seconds(10), std::chrono::minutes(5), &clock);
  TimePoint t = clock.Now();
  EXPECT_FALSE(b.IsInBackOffSince("k", t));
  b.Next("k", t);
  EXPECT_EQ(b.Get("k"), std::chrono::seconds(10));
  EXPECT_TRUE(b.IsInBackOffSince("k", t));
  clock.Step(std::chrono::seconds(11));
  EXPECT_FALSE(b.IsInBackOffSince("k", t));
  for (int i = 0; i < 10; ++i) b.Next("k", clock.Now());
  EXPECT_EQ(b.Get("k"), std::chrono::minutes(5));  // capped
  // A container that ran for more than 2*max (10 minutes) starts over at 10s.
  clock.Step(std::chrono::minutes(11));
  b.Next("k", clock.Now());
  EXPECT_EQ(b.Get("k"), std::chrono::seconds(10));
  clock.Step(std::chrono::minutes(11));
  b.GC();
  EXPECT_EQ(b.Size(), 0u);
}

}  // namespace
}  // namespace kubelet::kuberuntime
